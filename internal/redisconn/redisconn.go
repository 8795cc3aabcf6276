// Package redisconn opens the Redis connections of veil's two Redis backends, the encrypted store
// (sinks/store/redisstore) and the key store (crypto/keyring/rediskeys), one way: plain RESP2, no
// client metadata (CLIENT SETINFO) and no maintenance notifications, so that every server version
// with EXAT (6.2+) behaves the same; and checked with PING before use. Server, the settings both
// backends take (address, credentials, database, TLS), is declared here once, and prints and logs
// without its password.
package redisconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultAddr is the server Open connects to when Server.Addr is empty.
const DefaultAddr = "127.0.0.1:6379"

// Server says which Redis server to connect to and how. The zero value of each field is its
// documented default.
type Server struct {
	// Addr is host:port of the Redis server. Default DefaultAddr.
	Addr string
	// Username and Password authenticate with AUTH; empty means no authentication.
	Username string
	Password string
	// DB is the database number. Default 0.
	DB int
	// TLS, when set, makes the connection use TLS with this configuration.
	TLS *tls.Config
}

// String describes the server without the password: whether one is set, never its value.
func (s Server) String() string {
	pw := ""
	if s.Password != "" {
		pw = " password=[redacted]"
	}
	return fmt.Sprintf("addr=%s user=%s%s db=%d tls=%t", s.Addr, s.Username, pw, s.DB, s.TLS != nil)
}

// GoString is String, so %#v does not print the password either.
func (s Server) GoString() string { return s.String() }

// LogValue logs the server without the password: whether one is set, never its value. Options
// that embed a Server log its group's attributes (LogValue().Group()) beside their own.
func (s Server) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", s.Addr),
		slog.String("user", s.Username),
		slog.Bool("password_set", s.Password != ""),
		slog.Int("db", s.DB),
		slog.Bool("tls", s.TLS != nil),
	)
}

// Open connects to s (DefaultAddr when s.Addr is empty) over RESP2 without client identity or
// maintenance notifications, and checks the connection with PING. Cancelling ctx abandons the
// check. The error names the address, never the password.
func Open(ctx context.Context, s Server) (*redis.Client, error) {
	if s.Addr == "" {
		s.Addr = DefaultAddr
	}
	c := redis.NewClient(&redis.Options{
		Addr:                     s.Addr,
		Username:                 s.Username,
		Password:                 s.Password,
		DB:                       s.DB,
		TLSConfig:                s.TLS,
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %w", s.Addr, err)
	}
	return c, nil
}
