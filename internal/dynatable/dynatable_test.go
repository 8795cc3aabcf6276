package dynatable_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/testsvc"
)

// TestCreate: a new table is ACTIVE with pk/sk as keys when Create returns; creating it again is
// harmless; a cancelled context fails.
func TestCreate(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	db, err := dynatable.NewClient(t.Context(), dynatable.Conn{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "x", SecretAccessKey: "y"}, nil)
	if err != nil {
		t.Fatal(err)
	}
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

// TestNewClientNoRegion: without a region (and none in the environment) NewClient fails, as
// awsload.Load does, and the error does not hold the secret key.
func TestNewClientNoRegion(t *testing.T) {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/config")
	const secret = "dyn4mo-secret-never-printed"
	db, err := dynatable.NewClient(t.Context(), dynatable.Conn{AccessKeyID: "AKID", SecretAccessKey: secret}, nil)
	if err == nil || db != nil {
		t.Fatalf("NewClient without a region = %v, %v; want an error", db, err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("NewClient error %q holds the secret key", err)
	}
}

// TestConnRedacts: every way a Conn prints or logs shows the region, endpoint and key id, and
// never the secret key.
func TestConnRedacts(t *testing.T) {
	c := dynatable.Conn{Region: "eu-west-1", Endpoint: "http://127.0.0.1:4567", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "dyn4mo-secret-never-printed"}
	leakcheck.Printed(t, c, []string{c.SecretAccessKey}, "eu-west-1", "http://127.0.0.1:4567", "AKIDEXAMPLE")
	if got, want := c.String(), "region=eu-west-1 key=AKIDEXAMPLE secret=[redacted] endpoint=http://127.0.0.1:4567"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
