package dynatable_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/veil-project/veil/internal/awsload"
	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/testsvc"
)

// TestCreate: a new table is ACTIVE with pk/sk as keys when Create returns; creating it again is
// harmless; a cancelled context fails.
func TestCreate(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	cfg, err := awsload.Load(t.Context(), awsload.Settings{Region: "us-east-1", AccessKeyID: "x", SecretAccessKey: "y"})
	if err != nil {
		t.Fatal(err)
	}
	db := dynatable.NewClient(cfg, endpoint)
	for i := range 2 {
		if err := dynatable.Create(t.Context(), db, "veil-t"); err != nil {
			t.Fatalf("Create #%d = %v", i+1, err)
		}
	}
	out, err := db.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String("veil-t")})
	if err != nil {
		t.Fatal(err)
	}
	if st := out.Table.TableStatus; st != "ACTIVE" {
		t.Errorf("status after Create = %s, want ACTIVE", st)
	}
	keys := map[string]string{}
	for _, k := range out.Table.KeySchema {
		keys[aws.ToString(k.AttributeName)] = string(k.KeyType)
	}
	if keys[dynatable.PartitionKey] != "HASH" || keys[dynatable.SortKey] != "RANGE" || len(keys) != 2 {
		t.Errorf("key schema = %v, want pk HASH, sk RANGE", keys)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := dynatable.Create(ctx, db, "veil-other"); err == nil {
		t.Error("Create with a cancelled context = nil, want an error")
	}
}
