// Package awsload loads the AWS SDK configuration that veil's AWS clients (KMS, S3, DynamoDB)
// start from, so every client reads region and credentials the same way: an explicit region and
// static key pair when configured, else the SDK's default chain (environment, shared files,
// instance role). It fails when no region results, rather than letting the first call fail.
// Settings print and log without the secret key and the session token.
package awsload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Settings are the values veil's configuration gives every AWS client; the zero value uses the
// SDK's default chain for all of them.
type Settings struct {
	Region          string // "": the SDK's default chain (AWS_REGION, shared config)
	AccessKeyID     string // "": the SDK's default credential chain
	SecretAccessKey string // required with AccessKeyID
	SessionToken    string
}

// String describes the settings without the secret access key and the session token: whether
// each is set, never its value.
func (s Settings) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "region=%s key=%s", s.Region, s.AccessKeyID)
	if s.SecretAccessKey != "" {
		b.WriteString(" secret=[redacted]")
	}
	if s.SessionToken != "" {
		b.WriteString(" session_token=[redacted]")
	}
	return b.String()
}

// GoString is String, so %#v does not print the secrets either.
func (s Settings) GoString() string { return s.String() }

// LogValue logs the settings without the secret access key and the session token: whether each
// is set, never its value. Options that hold Settings log its group's attributes
// (LogValue().Group()) beside their own.
func (s Settings) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("region", s.Region),
		slog.String("access_key_id", s.AccessKeyID),
		slog.Bool("secret_set", s.SecretAccessKey != ""),
		slog.Bool("session_token_set", s.SessionToken != ""),
	)
}

// Load returns the AWS configuration for s; opts are applied after s's (checksums, retries, an
// HTTP client). It does not contact AWS; cancelling ctx only stops loading shared configuration.
// Every error starts with "loading AWS config: " and never holds the secret key.
func Load(ctx context.Context, s Settings, opts ...func(*config.LoadOptions) error) (aws.Config, error) {
	var all []func(*config.LoadOptions) error
	if s.Region != "" {
		all = append(all, config.WithRegion(s.Region))
	}
	if s.AccessKeyID != "" {
		if s.SecretAccessKey == "" {
			return aws.Config{}, errors.New("loading AWS config: access key id without secret access key")
		}
		all = append(all, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, s.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(all, opts...)...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("loading AWS config: no region configured")
	}
	return cfg, nil
}
