package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veil-project/veil/internal/httpserve"
	"golang.org/x/sync/errgroup"
)

// stage orders the shutdown of a group's actors: each stage is stopped, and waited for, before
// the next one.
type stage int

const (
	// stageInput reads the ledgers (the stream processor): stopped first, so nothing new enters.
	stageInput stage = iota
	// stageOutput reads what the input wrote (egress stages, the analytics sink).
	stageOutput
	// stageEdge answers requests that read the store (reveal API, console, principals watcher).
	stageEdge
	// stageHousekeeping keeps the process observable and tidy (operations server, key janitor,
	// lag and key-store watchers): stopped last, so /metrics and /healthz answer during shutdown.
	stageHousekeeping
	numStages
)

// shutdownTimeout bounds a group's shutdown, every stage included: an actor still running after
// it is named in the error, and the process exits without it.
const shutdownTimeout = 30 * time.Second

// errStoppedEarly is an actor's error when it returned nil before the group asked it to stop: an
// actor runs until it is stopped, so returning is a failure even without an error.
var errStoppedEarly = errors.New("stopped on its own")

// group runs the long-running actors of one veil process, after Prometheus's run.Group: each
// actor runs until it fails, returns, or its stage is stopped. The first actor to return (or a
// cancelled ctx) stops them all, stage by stage (see stage), and that actor's error is the
// group's; an error another actor returns while stopping is reported after it. Run returns only
// once every actor returned, or when shutdownTimeout (timeout) ran out.
//
// The components the actors use (stores, keyring, clients) are closed by their owner after Run
// returns, so none closes under a running actor.
type group struct {
	log     *slog.Logger
	timeout time.Duration
	actors  [numStages][]actor
}

// actor is one long-running function: run must return soon after its ctx is cancelled.
type actor struct {
	name string
	run  func(context.Context) error
}

func newGroup(log *slog.Logger) *group { return &group{log: log, timeout: shutdownTimeout} }

// add registers an actor; it starts when run is called.
func (g *group) add(st stage, name string, run func(context.Context) error) {
	g.actors[st] = append(g.actors[st], actor{name, run})
}

// run starts every actor and returns when they all returned (see group).
func (g *group) run(ctx context.Context) error {
	type exit struct {
		name string
		err  error
	}
	var (
		exits   = make(chan exit, len(slices.Concat(g.actors[:]...)))
		cancels [numStages]context.CancelFunc
		waits   [numStages]errgroup.Group
		mu      sync.Mutex
		running = make(map[string]int)
	)
	for st := range numStages {
		// Not ctx itself: a signal must stop the stages in order, not all at once.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[st] = cancel
		for _, a := range g.actors[st] {
			mu.Lock()
			running[a.name]++
			mu.Unlock()
			waits[st].Go(func() error {
				err := a.run(sctx)
				stopped := sctx.Err() != nil
				switch {
				case stopped && errors.Is(err, context.Canceled):
					err = nil
				case err == nil && !stopped:
					err = errStoppedEarly
				}
				if err != nil {
					err = fmt.Errorf("%s: %w", a.name, err)
					g.log.Error("component stopped", "component", a.name, "err", err)
				}
				mu.Lock()
				if running[a.name]--; running[a.name] == 0 {
					delete(running, a.name)
				}
				mu.Unlock()
				exits <- exit{a.name, err}
				return err
			})
		}
	}
	var first error
	select {
	case <-ctx.Done():
		g.log.Info("stopping veil", "cause", context.Cause(ctx).Error())
	case e := <-exits:
		first = e.err
		g.log.Error("a component stopped; stopping veil", "component", e.name, "err", e.err)
	}
	timer := time.NewTimer(g.timeout)
	defer timer.Stop()
	for st := range numStages {
		cancels[st]()
		done := make(chan error, 1)
		go func() { done <- waits[st].Wait() }()
		select {
		case err := <-done:
			if first == nil {
				first = err
			}
		case <-timer.C:
			for later := st + 1; later < numStages; later++ {
				cancels[later]() // a last chance to stop before the process exits
			}
			mu.Lock()
			names := slices.Sorted(maps.Keys(running))
			mu.Unlock()
			err := fmt.Errorf("shutdown timed out after %s; still running: %s", g.timeout, strings.Join(names, ", "))
			g.log.Error("shutdown timed out", "err", err)
			return errors.Join(first, err)
		}
	}
	return first
}

// serveHTTP is the actor of an HTTP server on ln (httpserve.Serve: until ctx ends, then a
// graceful shutdown).
func serveHTTP(srv *http.Server, ln net.Listener) func(context.Context) error {
	return func(ctx context.Context) error { return httpserve.Serve(ctx, srv, ln) }
}

// loop adapts a function that runs until ctx ends and returns nothing to an actor.
func loop(f func(context.Context)) func(context.Context) error {
	return func(ctx context.Context) error { f(ctx); return nil }
}
