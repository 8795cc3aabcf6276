package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/reveal"
)

// apiConfigured reports whether the reveal API may start: with a certificate, or with the plain
// HTTP development switch.
func apiConfigured(cfg *config.Config) bool {
	return cfg.Dev.PlainHTTP || (cfg.TLS.CertFile != "" && cfg.TLS.KeyFile != "")
}

// apiURL is the base URL the reveal API answers on.
func apiURL(cfg *config.Config) string {
	if cfg.Dev.PlainHTTP {
		return "http://" + cfg.Listen.API
	}
	return "https://" + cfg.Listen.API
}

// openAPI opens the reveal API on listen.api and adds its actors to g (stage edge): the server,
// the console's sampler and the principals-file watcher. Every reveal is audited to veil.audit
// through its own producer, closed with the service.
func (s *service) openAPI(ctx context.Context, g *group) error {
	aud, err := reveal.DialKafkaAuditor(s.brokers, s.kopts...)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, aud.Close)
	if s.setLinkAudit != nil {
		s.setLinkAudit(reveal.LinkAudit(aud, nil))
	}
	path := s.cfg.PrincipalsPath()
	pf, err := reveal.OpenPrincipalsFile(path, time.Second, func(err error) {
		s.log.Error("principals file", "path", path, "err", err)
	})
	if err != nil {
		return &configError{err}
	}
	srv, err := reveal.NewServer(reveal.ServerConfig{
		Addr: s.cfg.Listen.API, CertFile: s.cfg.TLS.CertFile, KeyFile: s.cfg.TLS.KeyFile,
		PlainHTTP: s.cfg.Dev.PlainHTTP, Opener: s.opener, Principals: pf, Auditor: aud, Logger: s.log,
		RatePerSecond: float64(s.cfg.Reveal.RatePerSecond), Burst: s.cfg.Reveal.Burst, Blobs: s.blobs,
	})
	if err != nil {
		return err
	}
	con, err := s.mountConsole(srv, pf)
	if err != nil {
		return err
	}
	s.console.Store(con)
	ln, err := srv.Listen()
	if errors.Is(err, reveal.ErrPlainHTTP) {
		return &configError{err}
	}
	if err != nil {
		return err
	}
	g.add(stageEdge, "reveal API", func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	g.add(stageEdge, "principals watcher", loop(func(ctx context.Context) { s.watchPrincipals(ctx, pf, time.Second) }))
	if s.obs != nil { // the console samples metrics only when it has them
		g.add(stageEdge, "console sampler", loop(func(ctx context.Context) { con.Run(ctx, 0) }))
	}
	s.log.Info("reveal API listening", "url", apiURL(s.cfg), "principals", path, "console", apiURL(s.cfg)+"/console/")
	return nil
}

// cmdServe serves the reveal API alone: store, keys and audit, no stream processor.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig("serve", args, stderr, nil)
	if err != nil {
		return err
	}
	if !apiConfigured(cfg) {
		return &configError{fmt.Errorf("the reveal API needs tls.cert_file and tls.key_file (or dev.plain_http on a loopback listen.api for development)")}
	}
	s, err := startService(ctx, cfg, stderr, false)
	if err != nil {
		return err
	}
	defer s.close(context.Background())
	g := newGroup(s.log)
	if err := s.openAPI(ctx, g); err != nil {
		return err
	}
	s.addBlobSweeper(g)
	fmt.Fprintf(stdout, "veil reveal API on %s/v1/reveal (principals %s)\n", apiURL(cfg), cfg.PrincipalsPath())
	return g.run(ctx)
}
