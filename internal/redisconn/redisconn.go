// Package redisconn opens the Redis connections of veil's two Redis backends, the encrypted store
// (sinks/store/redisstore) and the key store (crypto/keyring/rediskeys), one way: plain RESP2, no
// client metadata (CLIENT SETINFO) and no maintenance notifications, so that every server version
// with EXAT (6.2+) behaves the same; and checked with PING before use.
package redisconn

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultAddr is the server Open connects to when o.Addr is empty.
const DefaultAddr = "127.0.0.1:6379"

// Open connects to the server o names (address, credentials, database, TLS; o's protocol,
// identity and maintenance settings are replaced by the ones above) and checks the connection
// with PING. Cancelling ctx abandons the check. The error names the address, never the password.
func Open(ctx context.Context, o *redis.Options) (*redis.Client, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	o.Protocol = 2
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(o)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %w", o.Addr, err)
	}
	return c, nil
}
