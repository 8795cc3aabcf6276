package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"
)

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

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
	s.log.Info("veil running", "brokers", strings.Join(s.brokers, ","), "data_dir", s.cfg.DataDir)
	err := s.proc.Run(ctx)
	if opsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = opsSrv.Shutdown(sctx)
	}
	s.log.Info("veil stopped")
	return err
}

func (s *service) printWhere(w io.Writer) {
	mode := "external Kafka"
	if s.embedded != nil {
		mode = "embedded broker (kfake); raw ledger topics are kept in memory only"
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
	fmt.Fprintf(w, "  data dir   %s (root key, wrapped app keys, encrypted store)\n", s.cfg.DataDir)
	fmt.Fprintf(w, "  kms        %s   store %s\n", s.cfg.KMS.Provider, s.cfg.Store.Kind)
	fmt.Fprintf(w, "  apps       %s\n", appLine)
	if s.cfg.Listen.Metrics != "" {
		fmt.Fprintf(w, "  metrics    http://%s/metrics   health /healthz   ready /readyz\n", s.cfg.Listen.Metrics)
	}
}
