package main

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/veil-project/veil/pipeline"
)

// observer turns what the processor reports into metrics and readiness.
type observer struct {
	mu    sync.Mutex
	ready map[string]bool
}

func newObserver() *observer { return &observer{ready: map[string]bool{}} }

func (o *observer) Batch(outs []pipeline.Output, committed bool, sealTime time.Duration) {}

func (o *observer) Dependency(name string, ok bool) {
	o.mu.Lock()
	o.ready[name] = ok
	o.mu.Unlock()
}

func (o *observer) kmsCall(op string) {}

func (o *observer) server(addr string) *http.Server {
	return &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
}

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
