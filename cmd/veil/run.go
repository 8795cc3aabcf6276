package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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

// serve runs the processor and the operations server until ctx is cancelled.
func (s *service) serve(ctx context.Context) error {
	var opsSrv *http.Server
	if addr := s.cfg.Listen.Metrics; addr != "" {
		opsSrv = s.obs.server(addr)
		ln, err := listen(addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		go func() { _ = opsSrv.Serve(ln) }()
	}
	s.probe(ctx)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go keyJanitor(wctx, s.keys, s.log, keyJanitorInterval(s.cfg))
	if cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.kopts...)...); err == nil {
		defer cl.Close()
		go s.obs.watch(wctx, kadm.NewClient(cl), s.cfg.Kafka.Group, s.keys, 10*time.Second)
		go s.watchKeyStores(wctx, kadm.NewClient(cl), s.cfg.Kafka.Group, s.ksID, keyStoreWatchInterval)
	}
	sink, err := s.newAnalytics(ctx)
	if err != nil {
		return err
	}
	sinkDone := make(chan error, 1)
	if sink != nil {
		defer sink.Close()
		go func() { sinkDone <- sink.Run(wctx) }()
	} else {
		sinkDone <- nil
	}
	stages, err := s.newEgress()
	if err != nil {
		return err
	}
	stopEgress := s.runEgress(wctx, stages)
	defer stopEgress()
	stopAPI := func() {}
	if apiConfigured(s.cfg) {
		var err error
		if stopAPI, err = s.startAPI(ctx); err != nil {
			return err
		}
	} else {
		s.log.Warn("reveal API disabled: set tls.cert_file and tls.key_file, or dev.plain_http on a loopback listen.api")
	}
	defer stopAPI()
	s.log.Info("veil running", "brokers", strings.Join(s.brokers, ","), "data_dir", s.cfg.DataDir)
	err = s.proc.Run(ctx)
	stopWatch()
	if serr := <-sinkDone; serr != nil && err == nil {
		err = fmt.Errorf("analytics sink: %w", serr)
	}
	if eerr := stopEgress(); eerr != nil && err == nil {
		err = fmt.Errorf("egress: %w", eerr)
	}
	if opsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = opsSrv.Shutdown(sctx)
	}
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
		fmt.Fprintf(w, "  reveal     %s/v1/reveal   principals %s\n", apiURL(s.cfg), principalsPath(s.cfg))
		fmt.Fprintf(w, "  console    %s/console/   (sign in with a principal's API key)\n", apiURL(s.cfg))
	}
}
