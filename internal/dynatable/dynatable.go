// Package dynatable creates the DynamoDB clients and tables of veil's two DynamoDB backends, the
// encrypted store (sinks/store/dynamostore) and the key store (crypto/keyring/dynamokeys): both
// reach DynamoDB, or an endpoint standing in for it, through one client setup, and both tables
// are keyed by pk (String, HASH) and sk (String, RANGE), on on-demand capacity, so both are
// created, and waited for, the same way.
package dynatable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The key attributes of every veil table.
const (
	PartitionKey = "pk" // String, HASH
	SortKey      = "sk" // String, RANGE
)

// NewClient returns a DynamoDB client on cfg (see internal/awsload) that sends its requests to
// endpoint when it is not "" (dynalite, LocalStack) and to AWS otherwise; opts apply after.
func NewClient(cfg aws.Config, endpoint string, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}}, opts...)...)
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
