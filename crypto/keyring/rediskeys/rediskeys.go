// Package rediskeys is a keyring.KeyStore on Redis, shared by every veil process of a deployment.
//
// A key is one string, <prefix>{<app>}:<version>, holding keyring.EncodeKey's JSON (KMS-wrapped
// ciphertext only), created with SET NX EXAT <DestroyAt>: the put-if-absent is Redis's, and Redis
// deletes the key by itself at its destroy time. Tombstones replace a key with SET … EXAT. Replace
// is a compare-and-swap in one Lua script (the new value gets its own expiry), so it can never resurrect an erased key. The change
// counter is the integer <prefix>changes, increased with INCR. The app is the key's hash tag.
package rediskeys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/redisconn"
)

// DefaultPrefix is the default of Options.Prefix.
const DefaultPrefix = "veil:keys:"

// Options configures Open. The zero value of each field is its documented default.
type Options struct {
	// Server is the Redis server: address, credentials, database and TLS, each with the default
	// redisconn.Server documents (127.0.0.1:6379, no authentication, database 0, no TLS).
	redisconn.Server
	// Prefix starts every Redis key the store writes. Default DefaultPrefix.
	Prefix string
}

// String describes the options without the password.
func (o Options) String() string {
	return fmt.Sprintf("rediskeys{%s prefix=%s}", o.Server, o.Prefix)
}

// GoString is String, so %#v does not print the password either.
func (o Options) GoString() string { return o.String() }

// LogValue logs the options without the password.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(append(o.Server.LogValue().Group(), slog.String("prefix", o.Prefix))...)
}

// Store is a keyring.KeyStore on Redis. It is safe for concurrent use.
type Store struct {
	c      *redis.Client
	prefix string

	closeOnce sync.Once
	closeErr  error
}

var _ keyring.KeyStore = (*Store)(nil)

// Open connects to Redis and checks the connection with PING. Cancelling ctx abandons the check.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	c, err := redisconn.Open(ctx, opts.Server)
	if err != nil {
		return nil, err
	}
	return &Store{c: c, prefix: opts.Prefix}, nil
}

// Close closes the connection pool, waiting for its connections to close. It is idempotent:
// later calls return the first call's result. ctx is not consulted.
func (s *Store) Close(context.Context) error {
	s.closeOnce.Do(func() {
		if err := s.c.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing redis key store: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) key(app string, v int64) string {
	return s.prefix + "{" + app + "}:" + strconv.FormatInt(v, 10)
}

// exat is the expiry Redis gets: a key outlives its DestroyAt by less than a second, never dies
// before it. A DestroyAt in the past still writes (with a one-second life), so that Create always
// returns what is stored.
func exat(t time.Time) time.Time {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	if now := time.Now().Unix() + 1; sec < now {
		sec = now
	}
	return time.Unix(sec, 0)
}

// Create implements keyring.KeyStore with SET NX.
func (s *Store) Create(ctx context.Context, k keyring.WrappedKey) (keyring.WrappedKey, error) {
	b, err := keyring.EncodeKey(k)
	if err != nil {
		return keyring.WrappedKey{}, err
	}
	for range 3 {
		err := s.c.SetArgs(ctx, s.key(k.App, k.Period), b, redis.SetArgs{Mode: "NX", ExpireAt: exat(k.DestroyAt)}).Err()
		if err == nil {
			k.DestroyAt = k.DestroyAt.UTC()
			return k, nil
		}
		if !errors.Is(err, redis.Nil) {
			return keyring.WrappedKey{}, fmt.Errorf("creating key: %w", err)
		}
		// Another process stored first.
		got, err := s.Get(ctx, k.App, k.Period)
		if !errors.Is(err, keyring.ErrKeyNotFound) {
			return got, err
		}
		// ... and it expired in between: try again.
	}
	return keyring.WrappedKey{}, errors.New("creating key: key keeps expiring")
}

// Get implements keyring.KeyStore.
func (s *Store) Get(ctx context.Context, app string, v int64) (keyring.WrappedKey, error) {
	if err := keyring.ValidateApp(app); err != nil {
		return keyring.WrappedKey{}, err
	}
	b, err := s.c.Get(ctx, s.key(app, v)).Bytes()
	if errors.Is(err, redis.Nil) {
		return keyring.WrappedKey{}, keyring.ErrKeyNotFound
	}
	if err != nil {
		return keyring.WrappedKey{}, fmt.Errorf("reading key: %w", err)
	}
	return keyring.DecodeKey(b, app, v)
}

// Delete implements keyring.KeyStore.
func (s *Store) Delete(ctx context.Context, app string, v int64) error {
	if err := keyring.ValidateApp(app); err != nil {
		return err
	}
	if err := s.c.Del(ctx, s.key(app, v)).Err(); err != nil {
		return fmt.Errorf("deleting key: %w", err)
	}
	return nil
}

// List implements keyring.KeyStore with SCAN over the prefix.
func (s *Store) List(ctx context.Context) ([]keyring.WrappedKey, error) {
	var out []keyring.WrappedKey
	iter := s.c.Scan(ctx, 0, s.prefix+"{*}:*", 256).Iterator()
	for iter.Next(ctx) {
		name := iter.Val()
		app, v, ok := s.parse(name)
		if !ok {
			continue
		}
		k, err := s.Get(ctx, app, v)
		if errors.Is(err, keyring.ErrKeyNotFound) {
			continue // deleted or expired while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return out, nil
}

func (s *Store) parse(name string) (string, int64, bool) {
	rest, ok := strings.CutPrefix(name, s.prefix+"{")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndex(rest, "}:")
	if i < 0 {
		return "", 0, false
	}
	app := rest[:i]
	v, err := strconv.ParseInt(rest[i+2:], 10, 64)
	if err != nil || keyring.ValidateApp(app) != nil {
		return "", 0, false
	}
	return app, v, true
}

// Tombstone implements keyring.KeyStore.
func (s *Store) Tombstone(ctx context.Context, app string, v int64, destroyAt time.Time) error {
	b, err := keyring.EncodeKey(keyring.WrappedKey{App: app, Period: v, DestroyAt: destroyAt, Erased: true})
	if err != nil {
		return err
	}
	if err := s.c.SetArgs(ctx, s.key(app, v), b, redis.SetArgs{ExpireAt: exat(destroyAt)}).Err(); err != nil {
		return fmt.Errorf("writing tombstone: %w", err)
	}
	return nil
}

// replaceScript swaps KEYS[1] from ARGV[1] to ARGV[2], expiring at ARGV[3] (Unix seconds): 1 when
// swapped, 0 when the stored value is another, -1 when nothing is stored.
var replaceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return 1`)

// Replace implements keyring.Replacer as one compare-and-swap script. The stored value must be
// byte for byte what EncodeKey makes of old.
func (s *Store) Replace(ctx context.Context, old, nw keyring.WrappedKey) error {
	ob, err := keyring.ExpectedValue(old, nw)
	if err != nil {
		return err
	}
	nb, err := keyring.EncodeKey(nw)
	if err != nil {
		return err
	}
	n, err := replaceScript.Run(ctx, s.c, []string{s.key(old.App, old.Period)}, ob, nb, exat(nw.DestroyAt).Unix()).Int()
	switch {
	case err != nil:
		return fmt.Errorf("replacing key: %w", err)
	case n == -1:
		return keyring.ErrKeyNotFound
	case n == 0:
		return keyring.ErrKeyChanged
	}
	return nil
}

// Changes implements keyring.KeyStore.
func (s *Store) Changes(ctx context.Context) (int64, error) {
	n, err := s.c.Get(ctx, s.prefix+"changes").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading change counter: %w", err)
	}
	return n, nil
}

// NoteChange implements keyring.KeyStore with INCR.
func (s *Store) NoteChange(ctx context.Context) error {
	if err := s.c.Incr(ctx, s.prefix+"changes").Err(); err != nil {
		return fmt.Errorf("noting key change: %w", err)
	}
	return nil
}
