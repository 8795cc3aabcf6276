// Package awsload loads the AWS SDK configuration that veil's AWS clients (KMS, S3, DynamoDB)
// start from, so every client reads region and credentials the same way: an explicit region and
// static key pair when configured, else the SDK's default chain (environment, shared files,
// instance role). It fails when no region results, rather than letting the first call fail.
package awsload

import (
	"context"
	"errors"
	"fmt"

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
