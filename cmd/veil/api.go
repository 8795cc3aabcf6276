package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/reveal"
)

// principalsPath is the principals file: reveal.principals_file, or <data_dir>/principals.yaml.
func principalsPath(cfg *config.Config) string {
	if p := cfg.Reveal.PrincipalsFile; p != "" {
		return p
	}
	return filepath.Join(cfg.DataDir, "principals.yaml")
}

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

// startAPI serves the reveal API on listen.api until ctx is done or stop is called; stop waits
// for the shutdown. Every reveal is audited to veil.audit through its own producer.
func (s *service) startAPI(ctx context.Context) (stop func(), err error) {
	aud, err := reveal.DialKafkaAuditor(s.brokers, s.kopts...)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, aud.Close)
	if s.setLinkAudit != nil {
		s.setLinkAudit(reveal.LinkAudit(aud, nil))
	}
	path := principalsPath(s.cfg)
	pf, err := reveal.OpenPrincipalsFile(path, time.Second, func(err error) {
		s.log.Error("principals file", "path", path, "err", err)
	})
	if err != nil {
		return nil, &configError{err}
	}
	srv, err := reveal.NewServer(reveal.ServerConfig{
		Addr: s.cfg.Listen.API, CertFile: s.cfg.TLS.CertFile, KeyFile: s.cfg.TLS.KeyFile,
		PlainHTTP: s.cfg.Dev.PlainHTTP, Opener: s.opener, Principals: pf, Auditor: aud, Logger: s.log,
		RatePerSecond: float64(s.cfg.Reveal.RatePerSecond), Burst: s.cfg.Reveal.Burst, Blobs: s.blobs,
	})
	if err != nil {
		return nil, err
	}
	con, err := s.mountConsole(srv, pf)
	if err != nil {
		return nil, err
	}
	s.console.Store(con)
	ln, err := srv.Listen()
	if errors.Is(err, reveal.ErrPlainHTTP) {
		return nil, &configError{err}
	}
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(actx, ln); err != nil {
			s.log.Error("reveal API stopped", "err", err)
		}
	}()
	watched := make(chan struct{})
	go func() { defer close(watched); s.watchPrincipals(actx, pf, time.Second) }()
	sampled := make(chan struct{})
	go func() { defer close(sampled); con.Run(actx, 0) }()
	s.log.Info("reveal API listening", "url", apiURL(s.cfg), "principals", path, "console", apiURL(s.cfg)+"/console/")
	return func() { cancel(); <-done; <-watched; <-sampled }, nil
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
	stop, err := s.startAPI(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "veil reveal API on %s/v1/reveal (principals %s)\n", apiURL(cfg), principalsPath(cfg))
	<-ctx.Done()
	stop()
	return nil
}
