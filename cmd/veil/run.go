package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/ops"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/sinks/store"
)

func newLogger(w io.Writer, level string) *slog.Logger { return ops.NewLogger(w, level) }

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig("run", args, stderr, nil)
	if err != nil {
		return err
	}
	s, err := start(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer s.close(context.Background())
	s.printWhere(stdout)
	return s.serve(ctx)
}

// serve runs every actor of veil run under one group (see group) until ctx is cancelled or one
// of them stops: the processor, the egress stages, the analytics sink, the reveal API with its
// console and principals watcher, the operations server, the key janitor, the blob sweeper and
// the watchers. It returns once they all returned; the caller closes the components after it
// (service.close): the components serve creates (analytics sink, egress stages, the watchers'
// client) first.
func (s *service) serve(ctx context.Context) error {
	g := newGroup(s.log)
	if addr := s.cfg.Listen.Metrics; addr != "" {
		ln, err := listen(addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		defer ln.Close() // when serve fails before the group runs; the server closes it otherwise
		g.add(stageHousekeeping, "operations server", serveHTTP(s.obs.server(addr), ln))
	}
	s.probe(ctx)
	s.addBlobSweeper(g)
	g.add(stageHousekeeping, "key janitor", loop(func(ctx context.Context) {
		keyJanitor(ctx, s.keys, s.log, keyJanitorInterval(s.cfg))
	}))
	if cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.kopts...)...); err == nil {
		s.closers = append(s.closers, func(context.Context) error { cl.Close(); return nil })
		adm := kadm.NewClient(cl)
		g.add(stageHousekeeping, "lag watcher", loop(func(ctx context.Context) {
			s.obs.watch(ctx, adm, s.cfg.Kafka.Group, s.keys, 10*time.Second)
		}))
		g.add(stageHousekeeping, "key-store watcher", loop(func(ctx context.Context) {
			s.watchKeyStores(ctx, adm, s.cfg.Kafka.Group, s.ksID, keyStoreWatchInterval)
		}))
	}
	sink, err := s.newAnalytics(ctx)
	if err != nil {
		return err
	}
	if sink != nil {
		s.closers = append(s.closers, sink.Close)
		g.add(stageOutput, "analytics sink", sink.Run)
	}
	stages, err := s.newEgress()
	if err != nil {
		return err
	}
	for _, st := range stages {
		s.closers = append(s.closers, st.Close)
		g.add(stageOutput, "egress stage "+st.name, st.Run)
	}
	if apiConfigured(s.cfg) {
		if err := s.openAPI(ctx, g); err != nil {
			return err
		}
	} else {
		s.log.Warn("reveal API disabled: set tls.cert_file and tls.key_file, or dev.plain_http on a loopback listen.api")
	}
	g.add(stageInput, "processor", s.proc.Run)
	s.log.Info("veil running", "brokers", strings.Join(s.brokers, ","), "data_dir", s.cfg.DataDir)
	err = g.run(ctx)
	s.log.Info("veil stopped")
	return err
}

// probe checks the KMS and the store once at start, so readiness is true before the first
// record arrives; the processor keeps it current afterwards.
func (s *service) probe(ctx context.Context) {
	s.obs.Dependency("broker", true) // topics were created or checked in start
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := s.keys.SealingKey(pctx, pipeline.DeadLetterApp)
	s.obs.Dependency("keys", err == nil)
	if err != nil {
		s.log.Warn("KMS not reachable at start; entries wait until it is", "err", err)
	}
	_, err = s.store.Get(pctx, pipeline.DeadLetterApp, [16]byte{})
	ok := err == nil || errors.Is(err, store.ErrNotFound)
	s.obs.Dependency("store", ok)
	if !ok {
		s.log.Warn("encrypted store not reachable at start; entries wait until it is", "err", err)
	}
}

func (s *service) printWhere(w io.Writer) {
	mode := "external Kafka"
	if s.embedded != nil {
		mode = "embedded broker (kfake); raw ledger topics kept sealed under the KMS across restarts"
	}
	apps := appsOf(s.cfg)
	sort.Strings(apps)
	appLine := strings.Join(apps, ", ")
	if len(apps) == 0 {
		appLine = "none configured: entries of unlisted apps go to veil.deadletter (set apps: or allow_unknown_apps: true)"
	}
	fmt.Fprintf(w, "veil is running\n")
	fmt.Fprintf(w, "  kafka      %s (%s)\n", strings.Join(s.brokers, ","), mode)
	fmt.Fprintf(w, "  produce to ledger.<event|bot|http|ws|log|presence|thread|user|blob>\n")
	fmt.Fprintf(w, "  read       encrypted.<ledger>, redacted.<ledger>, veil.deadletter\n")
	fmt.Fprintf(w, "  data dir   %s (wrapped app keys, encrypted store)\n", s.cfg.DataDir)
	if s.cfg.KMS.Provider != "aws" {
		fmt.Fprintf(w, "  root key   %s (outside the data dir: back it up apart)\n", s.cfg.RootKeyPath())
	}
	fmt.Fprintf(w, "  kms        %s   store %s\n", s.cfg.KMS.Provider, s.cfg.Store.Kind)
	fmt.Fprintf(w, "  apps       %s\n", appLine)
	if s.cfg.Listen.Metrics != "" {
		fmt.Fprintf(w, "  metrics    http://%s/metrics   health /healthz   ready /readyz\n", s.cfg.Listen.Metrics)
	}
	if apiConfigured(s.cfg) {
		fmt.Fprintf(w, "  reveal     %s/v1/reveal   principals %s\n", apiURL(s.cfg), s.cfg.PrincipalsPath())
		fmt.Fprintf(w, "  console    %s/console/   (sign in with a principal's API key)\n", apiURL(s.cfg))
	}
}
