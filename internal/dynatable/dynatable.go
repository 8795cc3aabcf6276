// Package dynatable creates the DynamoDB clients and tables of veil's two DynamoDB backends, the
// encrypted store (sinks/store/dynamostore) and the key store (crypto/keyring/dynamokeys): both
// reach DynamoDB, or an endpoint standing in for it, through one client setup from one Conn
// (region, endpoint, static keys; it prints and logs without the secret key), and both tables
// are keyed by pk (String, HASH) and sk (String, RANGE), on on-demand capacity, so both are
// created, and waited for, the same way.
package dynatable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/veil-project/veil/internal/awsload"
)

// The key attributes of every veil table.
const (
	PartitionKey = "pk" // String, HASH
	SortKey      = "sk" // String, RANGE
)

// Conn says where DynamoDB is and as whom to call it. The zero value of each field is its
// documented default.
type Conn struct {
	// Region is the AWS region. Default from the environment or shared config; NewClient fails
	// if none is configured.
	Region string
	// Endpoint overrides the base endpoint, e.g. http://127.0.0.1:4567 for dynalite. Default AWS.
	Endpoint string
	// AccessKeyID and SecretAccessKey are static credentials, used when AccessKeyID is set.
	// Default the SDK's chain (environment, shared config, instance role).
	AccessKeyID     string
	SecretAccessKey string
}

// settings are what awsload takes of c; they also print and log c without its secret key.
func (c Conn) settings() awsload.Settings {
	return awsload.Settings{Region: c.Region, AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}
}

// String describes the connection without the secret access key: whether it is set, never its
// value.
func (c Conn) String() string { return fmt.Sprintf("%s endpoint=%s", c.settings(), c.Endpoint) }

// GoString is String, so %#v does not print the secret either.
func (c Conn) GoString() string { return c.String() }

// LogValue logs the connection without the secret access key: whether it is set, never its
// value. Options that embed a Conn log its group's attributes (LogValue().Group()) beside their
// own.
func (c Conn) LogValue() slog.Value {
	return slog.GroupValue(append(c.settings().LogValue().Group(), slog.String("endpoint", c.Endpoint))...)
}

// NewClient returns a DynamoDB client for c: the AWS configuration awsload.Load makes of c's
// region and keys, with load applied after them (an HTTP client), sending its requests to
// c.Endpoint when it is not "" (dynalite, LocalStack) and to AWS otherwise; opts apply after.
// It does not contact DynamoDB; cancelling ctx only stops loading shared configuration. Errors
// are awsload.Load's, and never hold the secret key.
func NewClient(ctx context.Context, c Conn, load []func(*config.LoadOptions) error, opts ...func(*dynamodb.Options)) (*dynamodb.Client, error) {
	cfg, err := awsload.Load(ctx, c.settings(), load...)
	if err != nil {
		return nil, err
	}
	return dynamodb.NewFromConfig(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	}}, opts...)...), nil
}

// Create creates table with PartitionKey and SortKey as keys and on-demand capacity
// (PAY_PER_REQUEST), unless it exists already, and waits until it is ACTIVE. It does not check
// the key schema of a table that existed. Cancelling ctx abandons the wait; the table may still
// be created.
func Create(ctx context.Context, db *dynamodb.Client, table string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(PartitionKey), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(SortKey), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(PartitionKey), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(SortKey), KeyType: types.KeyTypeRange},
		},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return err
	}
	return waitActive(ctx, db, table)
}

// waitActive polls DescribeTable until the table is ACTIVE, backing off from 50 ms to 1 s.
func waitActive(ctx context.Context, db *dynamodb.Client, table string) error {
	delay := 50 * time.Millisecond
	for {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			// Just created: not yet visible to DescribeTable.
		case err != nil:
			return fmt.Errorf("waiting for table: %w", err)
		case out.Table.TableStatus == types.TableStatusActive:
			return nil
		case out.Table.TableStatus != types.TableStatusCreating && out.Table.TableStatus != types.TableStatusUpdating:
			return fmt.Errorf("waiting for table: status %s", out.Table.TableStatus)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for table: %w", ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}
