package main

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/sinks/analytics"
	"github.com/veil-project/veil/sinks/blob"
)

// newAnalytics builds the Parquet sink from the config, or returns nil when it is disabled.
func (s *service) newAnalytics(ctx context.Context) (*analytics.Sink, error) {
	a := s.cfg.Analytics
	if !a.Enabled {
		return nil, nil
	}
	var w analytics.Writer
	if a.S3.Bucket != "" {
		client, err := blob.NewS3Client(ctx, s3ClientConfig(a.S3))
		if err != nil {
			return nil, fmt.Errorf("creating analytics S3 client: %w", err)
		}
		if w, err = analytics.NewS3(client, a.S3.Bucket, a.S3.Prefix); err != nil {
			return nil, fmt.Errorf("creating analytics S3 writer: %w", err)
		}
	} else {
		local, err := analytics.NewLocalDir(s.cfg.AnalyticsDir())
		if err != nil {
			return nil, fmt.Errorf("creating analytics directory: %w", err)
		}
		w = local
	}
	var names []string
	for _, l := range s.table.All() {
		names = append(names, l.Name)
	}
	// Static membership, like the processor: a restarted process takes its partitions back at
	// once instead of waiting out a rebalance around its dead predecessor.
	kopts := append(append([]kgo.Opt(nil), s.kopts...), kgo.InstanceID(s.cfg.Kafka.TransactionalID+"-analytics"))
	sink, err := analytics.New(analytics.Config{
		Brokers: s.brokers, Group: a.Group, Ledgers: names, Writer: w, KafkaOpts: kopts,
		ShutdownTimeout: 10 * time.Second,
		FlushInterval:   a.FlushInterval, MaxRows: a.MaxRows, Logger: s.log.With("component", "analytics"),
		OnFlush: s.obs.analyticsFlush,
	})
	if err != nil {
		return nil, fmt.Errorf("creating analytics sink: %w", err)
	}
	return sink, nil
}

func s3ClientConfig(c config.S3) blob.S3ClientConfig {
	return blob.S3ClientConfig{Region: c.Region, Endpoint: c.Endpoint, PathStyle: c.PathStyle}
}
