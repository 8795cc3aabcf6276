package main

import (
	"fmt"
	"io"
	"time"

	"github.com/veil-project/veil/console"
	"github.com/veil-project/veil/reveal"
)

// mountConsole serves the console under /console/ on the reveal API's listener; its reveals go
// through srv's own authorization and audit path. The caller runs its metrics sampler (Run).
func (s *service) mountConsole(srv *reveal.Server, principals reveal.Authenticator) (*console.Console, error) {
	table, err := s.cfg.LedgerTable()
	if err != nil {
		return nil, &configError{err}
	}
	var names []string
	for _, l := range table.All() {
		names = append(names, l.Name)
	}
	lg, err := console.NewLog(s.brokers, s.kopts...)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, lg.Close)
	cfg := console.Config{
		Principals: principals, Revealer: srv, Log: lg, Store: s.store, Ledgers: names,
		Secure: !s.cfg.Dev.PlainHTTP, Logger: s.log, FutureSkew: s.cfg.Limits.FutureSkew,
	}
	if s.keys != nil {
		cfg.Keys = s.keys
	}
	if s.obs != nil {
		cfg.Metrics, cfg.Readiness = s.obs.m, s.obs.ready
	}
	con, err := console.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating console: %w", err)
	}
	srv.Mount(console.Prefix, con)
	return con, nil
}

// demoConsoleSection prints a one-time link that signs the demo principal in to the console.
func demoConsoleSection(w io.Writer, v demoView) {
	con := v.s.console.Load()
	if con == nil || v.key == "" {
		return
	}
	link, err := con.SignInLink(v.key, 10*time.Minute)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "\n── console (Logs, Dead letters, Status, Audit; in a browser) ──\n")
	fmt.Fprintf(w, "  %s%s\n", apiURL(v.s.cfg), link)
	fmt.Fprintf(w, "  signs %s in once within 10 minutes; then sign in at %s/console/signin with its API key\n", demoPrincipalName, apiURL(v.s.cfg))
}
