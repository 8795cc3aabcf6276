// Package redisstore is the encrypted store on Redis, for deployments where several veil
// processes share one store.
//
// An item is one string key, veil:{<app>}:r:<hex ref>, whose value is the expiry in Unix seconds
// (8 bytes, big-endian) followed by the sealed record, written with SET … EXAT so Redis deletes it
// by itself at the expiry. Get also compares the stored expiry with the store's clock, so an item
// is dead from its expiry second even if Redis has not yet removed it. The app id is the key's hash
// tag, so all items of an app live in one Redis Cluster slot and DeleteApp is one SCAN of that
// app's keys.
package redisstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/veil-project/veil/internal/redisconn"
	"github.com/veil-project/veil/sinks/store"
)

// ErrMalformed is returned by Get when the stored value is too short to hold an expiry: the key
// was not written by this package.
var ErrMalformed = errors.New("redisstore: malformed stored value")

const (
	// pipelineSize bounds how many SETs Put sends in one round trip.
	pipelineSize = 512
	// scanCount is the COUNT hint DeleteApp gives SCAN; each SCAN page is unlinked at once.
	scanCount = 256
	expiryLen = 8
)

// Options configures Open. The zero value of each field is its documented default.
type Options struct {
	// Server is the Redis server: address, credentials, database and TLS, each with the default
	// redisconn.Server documents (127.0.0.1:6379, no authentication, database 0, no TLS).
	redisconn.Server
	// Clock is what Get and Put compare expiries against. Default time.Now. Redis's own expiry
	// always runs on the server's clock.
	Clock func() time.Time
}

// String describes the options without the password.
func (o Options) String() string { return fmt.Sprintf("redis{%s}", o.Server) }

// GoString is String, so %#v does not print the password either.
func (o Options) GoString() string { return o.String() }

// LogValue logs the options without the password.
func (o Options) LogValue() slog.Value { return o.Server.LogValue() }

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	c     *redis.Client
	clock func() time.Time

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open connects to Redis and checks the connection with PING. Cancelling ctx abandons the check.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	// The store uses only SET (with NX), GET, UNLINK and SCAN: redisconn's plain RESP2 suffices.
	c, err := redisconn.Open(ctx, opts.Server)
	if err != nil {
		return nil, err
	}
	return &Store{c: c, clock: opts.Clock}, nil
}

// Put writes the live items of items whose ref holds no record yet, with pipelined SET … NX
// EXAT; see store.Store. It validates every app id before writing anything. Redis runs each SET NX
// atomically, so of two writers racing for a ref exactly one sets it; for the items it did not
// set, Put reads the stored value and reports those that differ (a record deleted or expired
// since counts as differing: it is never written again). Items are not written atomically: on
// error some may have been written, and a retry of the same items is harmless.
func (s *Store) Put(ctx context.Context, items []store.Item) error {
	if err := store.ValidateItems(items); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	write, exists := store.Distinct(items, s.clock())
	var taken []int // items whose SET NX found the key set
	for start := 0; start < len(write); start += pipelineSize {
		chunk := write[start:min(start+pipelineSize, len(write))]
		pipe := s.c.Pipeline()
		cmds := make([]*redis.StatusCmd, len(chunk))
		for j, i := range chunk {
			it := items[i]
			cmds[j] = pipe.SetArgs(ctx, key(it.App, it.Ref), value(it), redis.SetArgs{Mode: "NX", ExpireAt: time.Unix(it.Expiry.Unix(), 0)})
		}
		_, _ = pipe.Exec(ctx) // each command's own error is checked below
		for j, cmd := range cmds {
			switch err := cmd.Err(); {
			case errors.Is(err, redis.Nil):
				taken = append(taken, chunk[j])
			case err != nil:
				return fmt.Errorf("putting items: %w", err)
			}
		}
	}
	for start := 0; start < len(taken); start += pipelineSize {
		chunk := taken[start:min(start+pipelineSize, len(taken))]
		pipe := s.c.Pipeline()
		cmds := make([]*redis.StringCmd, len(chunk))
		for j, i := range chunk {
			cmds[j] = pipe.Get(ctx, key(items[i].App, items[i].Ref))
		}
		_, _ = pipe.Exec(ctx)
		for j, cmd := range cmds {
			v, err := cmd.Bytes()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("putting items: reading records already there: %w", err)
			}
			if !bytes.Equal(v, value(items[chunk[j]])) {
				exists = append(exists, chunk[j])
			}
		}
	}
	return store.ExistsResult(exists)
}

// value is what an item's key holds: its expiry in Unix seconds, then the sealed record.
func value(it store.Item) []byte {
	v := make([]byte, expiryLen+len(it.Value))
	binary.BigEndian.PutUint64(v, uint64(it.Expiry.Unix()))
	copy(v[expiryLen:], it.Value)
	return v
}

// Get returns the live item for (app, ref), or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	if err := store.ValidateApp(app); err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	v, err := s.c.Get(ctx, key(app, ref)).Bytes()
	if errors.Is(err, redis.Nil) {
		return store.Item{}, store.ErrNotFound
	}
	if err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	if len(v) < expiryLen {
		return store.Item{}, fmt.Errorf("getting item: %w", ErrMalformed)
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
	if store.Expired(exp, s.clock()) {
		return store.Item{}, store.ErrNotFound
	}
	return store.Item{App: app, Ref: ref, Expiry: exp, Value: v[expiryLen:]}, nil
}

// Delete removes the item for (app, ref), if any.
func (s *Store) Delete(ctx context.Context, app string, ref [16]byte) error {
	if err := store.ValidateApp(app); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	if err := s.c.Unlink(ctx, key(app, ref)).Err(); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	return nil
}

// DeleteApp removes every item of app, one SCAN page at a time, and reports how many keys it
// removed. Cancelling ctx stops it between pages; the count then says how many were removed
// before.
func (s *Store) DeleteApp(ctx context.Context, app string) (int, error) {
	if err := store.ValidateApp(app); err != nil {
		return 0, fmt.Errorf("deleting app: %w", err)
	}
	// App ids hold no glob metacharacter (store.ValidateApp), so the pattern matches this app only.
	match := "veil:{" + app + "}:r:*"
	var cursor uint64
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("deleting app: %w", err)
		}
		keys, next, err := s.c.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return total, fmt.Errorf("deleting app: %w", err)
		}
		if len(keys) > 0 {
			// SCAN may return a key twice; UNLINK counts only keys it actually removed.
			n, err := s.c.Unlink(ctx, keys...).Result()
			if err != nil {
				return total, fmt.Errorf("deleting app: %w", err)
			}
			total += int(n)
		}
		if next == 0 {
			return total, nil
		}
		cursor = next
	}
}

// Close closes the connection pool. It is idempotent: later calls return the first call's
// result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if err := s.c.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing redis store: %w", err)
		}
	})
	return s.closeErr
}

func key(app string, ref [16]byte) string {
	const prefix, mid = "veil:{", "}:r:"
	b := make([]byte, 0, len(prefix)+len(app)+len(mid)+2*len(ref))
	b = append(b, prefix...)
	b = append(b, app...)
	b = append(b, mid...)
	b = hex.AppendEncode(b, ref[:])
	return string(b)
}
