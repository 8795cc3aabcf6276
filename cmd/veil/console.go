package main

import (
	"context"
	"fmt"

	"github.com/veil-project/veil/console"
	"github.com/veil-project/veil/reveal"
)

// mountConsole serves the console under /console/ on the reveal API's listener; its reveals go
// through srv's own authorization and audit path. The caller runs its metrics sampler (Run).
func (s *service) mountConsole(ctx context.Context, srv *reveal.Server, principals reveal.Authenticator) (*console.Console, error) {
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
	s.closers = append(s.closers, func(context.Context) error { lg.Close(); return nil })
	cfg := console.Config{
		Principals: principals, Revealer: srv, Log: lg, Store: s.store, Ledgers: names,
		Secure: !s.cfg.Dev.PlainHTTP, Logger: s.log,
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
