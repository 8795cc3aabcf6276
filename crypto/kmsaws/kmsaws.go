// Package kmsaws builds the AWS KMS client veil wraps app KEKs with. The *kms.Client it returns
// satisfies keyring.KMS directly: there is no wrapper between the keyring and the SDK.
package kmsaws

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/veil-project/veil/crypto/keyring"

	"github.com/veil-project/veil/internal/awsload"
)

var _ keyring.ReEncrypter = (*kms.Client)(nil)

// Config selects the AWS KMS endpoint and credentials. Zero values fall back to the SDK's
// default chain (environment, shared config, instance role).
type Config struct {
	Region   string // AWS region; default from the environment or shared config, else an error
	Endpoint string // base endpoint override, e.g. http://localhost:4566 for LocalStack; default AWS
	KeyID    string // key id, ARN or alias veil wraps app KEKs with (keyring.Config.KeyID)

	// Static credentials, used when AccessKeyID is set; otherwise the default chain.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string

	MaxAttempts int // attempts per call including retries; default the SDK's (3)
}

// settings are what awsload takes of cfg; they also print and log cfg without its secrets.
func (cfg Config) settings() awsload.Settings {
	return awsload.Settings{Region: cfg.Region, AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, SessionToken: cfg.SessionToken}
}

// String describes cfg without the secret access key and the session token.
func (cfg Config) String() string {
	return fmt.Sprintf("kmsaws{%s endpoint=%s key_id=%s}", cfg.settings(), cfg.Endpoint, cfg.KeyID)
}

// GoString is String, so %#v does not print the secrets either.
func (cfg Config) GoString() string { return cfg.String() }

// LogValue logs cfg without the secret access key and the session token.
func (cfg Config) LogValue() slog.Value {
	return slog.GroupValue(append(cfg.settings().LogValue().Group(), slog.String("endpoint", cfg.Endpoint), slog.String("key_id", cfg.KeyID))...)
}

// New returns a KMS client for cfg. It does not contact KMS; cancelling ctx only stops loading
// shared configuration.
func New(ctx context.Context, cfg Config) (*kms.Client, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.MaxAttempts > 0 {
		opts = append(opts, config.WithRetryMaxAttempts(cfg.MaxAttempts))
	}
	awsCfg, err := awsload.Load(ctx, cfg.settings(), opts...)
	if err != nil {
		return nil, err
	}
	return kms.NewFromConfig(awsCfg, func(o *kms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	}), nil
}
