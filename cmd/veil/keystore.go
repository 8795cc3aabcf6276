package main

import (
	"context"
	"fmt"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/dynamokeys"
	"github.com/veil-project/veil/crypto/keyring/rediskeys"
)

// openKeyStore opens the key store cfg names (config.KeyStoreKind) and returns it with its closer.
func openKeyStore(ctx context.Context, cfg *config.Config) (keyring.KeyStore, func(context.Context) error, error) {
	nop := func(context.Context) error { return nil }
	switch kind := cfg.KeyStoreKind(); kind {
	case "file":
		ks, err := keyring.NewFileKeyStore(cfg.KeysDir())
		if err != nil {
			return nil, nil, fmt.Errorf("opening key store: %w", err)
		}
		return ks, nop, nil
	case "redis":
		ks, err := rediskeys.Open(ctx, rediskeys.Options{Server: redisServer(cfg.Store.Redis), Prefix: cfg.Keys.RedisPrefix})
		if err != nil {
			return nil, nil, fmt.Errorf("opening Redis key store: %w", err)
		}
		return ks, ks.Close, nil
	case "dynamodb":
		d := cfg.Store.DynamoDB
		ks, err := dynamokeys.Open(ctx, dynamokeys.Options{Table: cfg.KeyTable(), Conn: dynamoConn(d), CreateTable: d.CreateTable})
		if err != nil {
			return nil, nil, fmt.Errorf("opening DynamoDB key store: %w", err)
		}
		return ks, nop, nil
	default:
		return nil, nil, &configError{fmt.Errorf("keys.store %q is not available in this build", kind)}
	}
}
