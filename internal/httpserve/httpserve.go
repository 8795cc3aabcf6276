// Package httpserve is the one way veil runs an HTTP server (the reveal API, the operations
// server): it serves until its context ends, then shuts down gracefully.
package httpserve

import (
	"context"
	"net"
	"net/http"
	"time"
)

// ShutdownGrace is how long a shutdown waits for requests in flight before closing what is left.
const ShutdownGrace = 5 * time.Second

// Serve serves srv on ln until ctx ends, then shuts srv down, giving requests in flight up to
// ShutdownGrace, and returns nil once srv has stopped. If srv stops on its own first, Serve
// returns its error (never nil: http.Server.Serve always returns one).
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}
