// Command soakbroker runs veil's embedded broker (kfake with its kept state in a data directory)
// as a process of its own, for the soak and fault tests: they stop and restart it on the same
// address, and it runs without the race detector however the tests are built. It prints "ready"
// on stdout once it accepts connections, and on SIGTERM or SIGINT writes its state and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/kmslocal"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen `address`")
	dir := flag.String("data", "", "data `directory` of the kept state (empty: memory only)")
	partitions := flag.Int("partitions", 3, "default partitions per topic")
	rootKey := flag.String("rootkey", "", "local KMS root key `file` (created if missing): raw topics are kept sealed under it; empty keeps them in memory only")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg := broker.EmbeddedConfig{Addr: *addr, DataDir: *dir, Partitions: *partitions, Logger: log, SyncInterval: 500 * time.Millisecond}
	if *rootKey != "" {
		k, err := kmslocal.Open(*rootKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "soakbroker:", err)
			os.Exit(1)
		}
		cfg.KMS, cfg.KeyID = k, kmslocal.DefaultKeyID
	}
	e, err := broker.StartEmbedded(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soakbroker:", err)
		os.Exit(1)
	}
	fmt.Println("ready", e.Addrs()[0])
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Close(cctx); err != nil {
		fmt.Fprintln(os.Stderr, "soakbroker:", err)
		os.Exit(1)
	}
}
