package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/keyring/dynamokeys"
	"github.com/veil-project/veil/crypto/kmsaws"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store/dynamostore"
	"github.com/veil-project/veil/sinks/store/redisstore"
)

// checkTimeout bounds each dependency's check.
const checkTimeout = 10 * time.Second

// dependencyCheck is one line of veil check: a dependency and how to reach it read-only. ok
// describes what answered; an error is the failure.
type dependencyCheck struct {
	name  string
	check func(ctx context.Context) (string, error)
}

// cmdCheck validates the configuration (parseConfig exits 3 on an invalid one) and reaches every
// configured dependency without writing anything: no topic, table, bucket, key or file is
// created. One line per dependency; a notOK failure when any is unreachable.
//
// With --ready it checks the running veil instead: GET /readyz on listen.metrics (a container
// healthcheck; the distroless image has no shell or curl).
func cmdCheck(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var ready bool
	cfg, err := parseConfig("check", args, nil, func(fs *flag.FlagSet) {
		fs.BoolVar(&ready, "ready", false, "check only that the veil running with this config is ready (GET /readyz on listen.metrics)")
	})
	if err != nil {
		return err
	}
	if ready {
		return checkReady(ctx, cfg, stdout)
	}
	fmt.Fprintf(stdout, "config      ok\n")
	failed := 0
	for _, d := range dependencyChecks(cfg) {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		what, err := d.check(cctx)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%-11s FAIL  %v\n", d.name, err)
			continue
		}
		fmt.Fprintf(stdout, "%-11s ok    %s\n", d.name, what)
	}
	if failed > 0 {
		return fmt.Errorf("%d of the configured dependencies did not answer", failed)
	}
	return nil
}

func dependencyChecks(cfg *config.Config) []dependencyCheck {
	var out []dependencyCheck
	out = append(out, dependencyCheck{"kafka", func(ctx context.Context) (string, error) {
		if cfg.EmbeddedBroker() {
			return "embedded broker on " + cfg.Kafka.Embedded.Addr + " (started by veil run)", nil
		}
		opts, err := kafkaOpts(cfg.Kafka)
		if err != nil {
			return "", err
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...)}, opts...)...)
		if err != nil {
			return "", err
		}
		defer cl.Close()
		bs, err := kadm.NewClient(cl).ListBrokers(ctx)
		if err != nil {
			return "", fmt.Errorf("listing brokers at %s: %w", strings.Join(cfg.Kafka.Brokers, ","), err)
		}
		return fmt.Sprintf("%d broker(s) at %s", len(bs), strings.Join(cfg.Kafka.Brokers, ",")), nil
	}})
	out = append(out, dependencyCheck{"kms", func(ctx context.Context) (string, error) {
		if cfg.KMS.Provider == "local" {
			path := cfg.RootKeyPath()
			if _, err := os.Stat(cfg.LegacyRootKeyPath()); err == nil {
				return "local root key in the data directory (veil run moves it to " + path + ")", nil
			}
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				return "local root key " + path + " (not there yet: veil run creates it)", nil
			} else if err != nil {
				return "", err
			}
			return "local root key " + path, nil
		}
		c, err := kmsaws.New(ctx, kmsConfig(cfg.KMS.AWS, cfg.KMS.KeyID))
		if err != nil {
			return "", err
		}
		k, err := c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(cfg.KMS.KeyID)})
		if err != nil {
			return "", fmt.Errorf("describing %s: %w", cfg.KMS.KeyID, err)
		}
		if k.KeyMetadata == nil || !k.KeyMetadata.Enabled {
			return "", fmt.Errorf("aws key %s is not enabled", cfg.KMS.KeyID)
		}
		return "aws key " + cfg.KMS.KeyID + " enabled", nil
	}})
	out = append(out, dependencyCheck{"store", func(ctx context.Context) (string, error) {
		switch cfg.Store.Kind {
		case "redis":
			return checkRedis(ctx, cfg.Store.Redis)
		case "dynamodb":
			d := cfg.Store.DynamoDB
			st, err := dynamostore.Open(ctx, dynamostore.Options{Table: d.Table, Conn: dynamoConn(d)})
			if err != nil {
				if d.CreateTable {
					return "", fmt.Errorf("%w (store.dynamodb.create_table: veil run would create it)", err)
				}
				return "", err
			}
			st.Close(ctx)
			return "dynamodb table " + d.Table, nil
		}
		return localDir("badger", cfg.StoreDir())
	}})
	out = append(out, dependencyCheck{"key store", func(ctx context.Context) (string, error) {
		switch cfg.KeyStoreKind() {
		case "redis":
			return checkRedis(ctx, cfg.Store.Redis)
		case "dynamodb":
			if _, err := dynamokeys.Open(ctx, dynamokeys.Options{Table: cfg.KeyTable(), Conn: dynamoConn(cfg.Store.DynamoDB)}); err != nil {
				return "", err
			}
			return "dynamodb table " + cfg.KeyTable(), nil
		}
		return localDir("file", cfg.KeysDir())
	}})
	if cfg.Analytics.Enabled && cfg.Analytics.S3.Bucket != "" {
		out = append(out, dependencyCheck{"analytics", func(ctx context.Context) (string, error) {
			return checkBucket(ctx, cfg.Analytics.S3)
		}})
	}
	if cfg.Blob.S3.Bucket != "" {
		out = append(out, dependencyCheck{"blob", func(ctx context.Context) (string, error) {
			return checkBucket(ctx, cfg.Blob.S3)
		}})
	}
	if cfg.TLS.CertFile != "" {
		out = append(out, dependencyCheck{"tls", func(context.Context) (string, error) {
			if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
				return "", fmt.Errorf("loading tls.cert_file and tls.key_file: %w", err)
			}
			fp, err := certFingerprint(cfg.TLS.CertFile)
			if err != nil {
				return "", err
			}
			return "certificate sha256 " + fp, nil
		}})
	}
	return out
}

// checkReady asks the running veil's operations server whether it is ready.
func checkReady(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	if cfg.Listen.Metrics == "" {
		return &configError{errors.New("listen.metrics is empty: there is no /readyz to ask")}
	}
	host, port, err := net.SplitHostPort(cfg.Listen.Metrics)
	if err != nil {
		return &configError{fmt.Errorf("listen.metrics: %w", err)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every interface: ask over loopback
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stdout, "veil        ready (%s)\n", url)
	return nil
}

func checkRedis(ctx context.Context, r config.Redis) (string, error) {
	st, err := redisstore.Open(ctx, redisstore.Options{Server: redisServer(r)})
	if err != nil {
		return "", err
	}
	st.Close(ctx)
	return "redis " + r.Addr, nil
}

func checkBucket(ctx context.Context, b config.S3) (string, error) {
	c, err := blob.NewS3Client(ctx, s3ClientConfig(b))
	if err != nil {
		return "", err
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.Bucket)}); err != nil {
		return "", fmt.Errorf("bucket %s: %w", b.Bucket, err)
	}
	return "s3 bucket " + b.Bucket, nil
}

// localDir reports on a local directory veil creates on first run.
func localDir(kind, dir string) (string, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return kind + " " + dir + " (not there yet: veil run creates it)", nil
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	return kind + " " + dir, nil
}
