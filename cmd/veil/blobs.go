package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/periodic"
	"github.com/veil-project/veil/sinks/blob"
)

// linkAuditor is the audit hook of signed-link fetches, set once the reveal API (which serves the
// links) has its auditor. Until then a fetch fails closed.
type linkAuditor = func(context.Context, envelope.Token, blob.Status) error

// openBlobs builds the blob service (local directory or S3) and starts its sweeper, which deletes
// media past their TTL (S3 lifecycle rules are day-grained, so veil deletes them itself).
func (s *service) openBlobs(ctx context.Context) error {
	c := s.cfg.Blob
	var objects blob.Objects
	if c.S3.Bucket != "" {
		client, err := blob.NewS3Client(ctx, s3ClientConfig(c.S3))
		if err != nil {
			return fmt.Errorf("creating blob S3 client: %w", err)
		}
		if objects, err = blob.NewS3(blob.S3Config{Client: client, Bucket: c.S3.Bucket, Prefix: c.S3.Prefix}); err != nil {
			return fmt.Errorf("creating blob S3 store: %w", err)
		}
	} else {
		d, err := blob.NewDir(s.cfg.BlobDir())
		if err != nil {
			return fmt.Errorf("creating blob directory: %w", err)
		}
		objects = d
	}
	staging := s.cfg.BlobStagingDir()
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return fmt.Errorf("creating staging directory: %w", err)
	}
	// One link key for the whole deployment: a link issued by one process verifies on every other.
	secret, err := s.linkSecret(ctx)
	if err != nil {
		return err
	}
	var audit atomic.Pointer[linkAuditor]
	s.setLinkAudit = func(a linkAuditor) { audit.Store(&a) }
	s.blobs, err = blob.New(blob.Config{
		Objects: objects, Store: s.store, Sealer: s.sealer, StagingDir: staging, LinkSecret: secret,
		Audit: func(ctx context.Context, tok envelope.Token, st blob.Status) error {
			a := audit.Load()
			if a == nil {
				return errors.New("no auditor for signed links")
			}
			return (*a)(ctx, tok, st)
		},
	})
	clear(secret)
	if err != nil {
		return fmt.Errorf("creating blob service: %w", err)
	}
	s.closers = append(s.closers, s.blobs.Close) // the method value: a failed start sets s to nil
	return nil
}

// addBlobSweeper adds to g the actor that deletes expired media every minute (veil itself, since
// S3 lifecycle rules are day-grained).
func (s *service) addBlobSweeper(g *group) {
	g.add(stageHousekeeping, "blob sweeper", loop(func(ctx context.Context) { s.sweepBlobs(ctx, time.Minute) }))
}

func (s *service) sweepBlobs(ctx context.Context, every time.Duration) {
	periodic.Every(ctx, every, func(ctx context.Context) {
		start := time.Now()
		n, err := s.blobs.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.obs.m.SinkErrors.WithLabelValues("blob").Inc()
			s.log.Warn("sweeping expired blobs", "err", err)
			return
		}
		if n > 0 {
			s.log.Info("swept expired blobs", "deleted", n, "took", time.Since(start))
		}
	})
}

// linkSecretName names the signing key of media links among the key store's shared secrets
// (keyring.SharedSecret): generated once by the KMS, kept wrapped, the same for every process.
const linkSecretName = "blob-links"

// linkSecret reads the deployment's media-link key from the key store, which needs the KMS. While
// the KMS is unreachable at start veil waits, retrying with backoff, says so in the log and on
// /readyz (condition keys), and stays alive, as it does for a KMS outage later on; cancelling ctx
// gives up. A key store that cannot be read, or a KMS that refuses the request, is fatal (exit 4).
func (s *service) linkSecret(ctx context.Context) ([]byte, error) {
	b, err := s.keys.SharedSecret(ctx, linkSecretName)
	if err == nil {
		return b, nil
	}
	stop := func() {}
	defer func() { stop() }()
	for delay := 500 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		if !keyring.IsTransient(err) {
			return nil, &refusedError{fmt.Errorf("reading the media-link key from the key store: %w", err)}
		}
		s.log.Warn("KMS unavailable at start; waiting for it", "err", err, "retry_in", delay)
		s.obs.ready.Set("keys", false, "KMS unavailable; retrying with backoff")
		if addr := s.cfg.Listen.Metrics; addr != "" && delay == 500*time.Millisecond {
			// /readyz answers while veil waits; serve starts the real operations server later.
			if ln, lerr := listen(addr); lerr == nil {
				srv := s.obs.server(addr)
				served := make(chan struct{})
				go func() { defer close(served); _ = srv.Serve(ln) }()
				stop = func() { _ = srv.Close(); <-served }
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		if b, err = s.keys.SharedSecret(ctx, linkSecretName); err == nil {
			return b, nil
		}
	}
}
