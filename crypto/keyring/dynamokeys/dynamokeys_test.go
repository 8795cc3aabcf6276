package dynamokeys_test

import (
	"context"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/dynamokeys"
	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/keystoretest"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestConformance(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	keystoretest.Run(t, func(t *testing.T, ns string) keyring.KeyStore {
		s, err := dynamokeys.Open(context.Background(), dynamokeys.Options{
			Table:       "keys-" + ns,
			Conn:        dynatable.Conn{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "test", SecretAccessKey: "test"},
			CreateTable: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenWithoutTable(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	_, err := dynamokeys.Open(context.Background(), dynamokeys.Options{
		Table: "missing", Conn: dynatable.Conn{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "test", SecretAccessKey: "test"},
	})
	if err == nil {
		t.Errorf("Open of a missing table without CreateTable = nil error")
	}
}

// TestOptionsRedact: the options print and log the table and the connection (without its secret
// access key).
func TestOptionsRedact(t *testing.T) {
	const secret = "keys-secret-never-printed"
	o := dynamokeys.Options{Table: "veil-keys", Conn: dynatable.Conn{Region: "us-east-1", Endpoint: "http://d:4567", AccessKeyID: "AKIDKEYS", SecretAccessKey: secret}}
	leakcheck.Printed(t, o, []string{secret}, "veil-keys", "us-east-1", "http://d:4567")
	if got, want := o.String(), "dynamokeys{table=veil-keys region=us-east-1 key=AKIDKEYS secret=[redacted] endpoint=http://d:4567}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
