package dynamokeys_test

import (
	"context"
	"testing"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/crypto/keyring/dynamokeys"
	"github.com/veil-project/veil/internal/keystoretest"
	"github.com/veil-project/veil/internal/testsvc"
)

func TestConformance(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	keystoretest.Run(t, func(t *testing.T, ns string) keyring.KeyStore {
		s, err := dynamokeys.Open(context.Background(), dynamokeys.Options{
			Table: "keys-" + ns, Region: "us-east-1", Endpoint: endpoint,
			AccessKeyID: "test", SecretAccessKey: "test", CreateTable: true,
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
		Table: "missing", Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "test", SecretAccessKey: "test",
	})
	if err == nil {
		t.Errorf("Open of a missing table without CreateTable = nil error")
	}
}
