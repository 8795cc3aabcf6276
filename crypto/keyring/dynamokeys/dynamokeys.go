// Package dynamokeys is a keyring.KeyStore on Amazon DynamoDB, shared by every veil process of a
// deployment.
//
// The table is keyed by pk (String, the app id) and sk (String, the key version in decimal); an
// item holds v (Binary, keyring.EncodeKey's JSON: KMS-wrapped ciphertext only) and exp (Number, the
// DestroyAt in Unix seconds, the table's TTL attribute). Create is a PutItem with the condition
// attribute_not_exists(pk), so exactly one process's key is stored for a version; Replace is a
// PutItem conditioned on the old value; tombstones overwrite unconditionally. The change counter
// is the item pk "!changes" (never an app id), increased with UpdateItem ADD. Every read is
// strongly consistent. Use a table of its own, not the encrypted store's: erasing an app deletes
// the store's rows of that app, but must leave its key tombstones.
package dynamokeys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/dynatable"
)

const (
	attrApp     = dynatable.PartitionKey
	attrVersion = dynatable.SortKey
	attrValue   = "v"
	attrExpiry  = "exp"
	attrCount   = "n"
	changesPK   = "!changes"
)

// Options configures Open. The zero value of each field is its documented default.
type Options struct {
	// Table is the DynamoDB table name. Required.
	Table string
	// Conn is where DynamoDB is and as whom to call it: region, endpoint and static keys, each
	// with the default dynatable.Conn documents (the SDK's chains, AWS itself).
	dynatable.Conn
	// CreateTable makes Open create the table (on demand capacity) if it does not exist.
	CreateTable bool
}

// String describes the options without the secret access key.
func (o Options) String() string {
	return fmt.Sprintf("dynamokeys{table=%s %s}", o.Table, o.Conn)
}

// GoString is String, so %#v does not print the secret either.
func (o Options) GoString() string { return o.String() }

// LogValue logs the options without the secret access key.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(append([]slog.Attr{slog.String("table", o.Table)}, o.Conn.LogValue().Group()...)...)
}

// Store is a keyring.KeyStore on DynamoDB. It is safe for concurrent use.
type Store struct {
	db    *dynamodb.Client
	table string
}

var _ keyring.KeyStore = (*Store)(nil)

// Open builds a DynamoDB client and checks (or, with CreateTable, creates) the table.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Table == "" {
		return nil, errors.New("opening dynamodb key store: no table name")
	}
	db, err := dynatable.NewClient(ctx, opts.Conn, nil)
	if err != nil {
		return nil, fmt.Errorf("opening dynamodb key store: %w", err)
	}
	s := &Store{table: opts.Table, db: db}
	if opts.CreateTable {
		if err := s.createTable(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}); err != nil {
		return nil, fmt.Errorf("opening dynamodb key store: table %s: %w", s.table, err)
	}
	return s, nil
}

func (s *Store) createTable(ctx context.Context) error {
	if err := dynatable.Create(ctx, s.db, s.table); err != nil {
		return fmt.Errorf("creating key table %s: %w", s.table, err)
	}
	// Best effort, as for the store: the keyring checks DestroyAt on every read anyway.
	_, _ = s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrExpiry), Enabled: aws.Bool(true)},
	})
	return nil
}

func itemKey(app string, v int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrApp:     &types.AttributeValueMemberS{Value: app},
		attrVersion: &types.AttributeValueMemberS{Value: strconv.FormatInt(v, 10)},
	}
}

func item(k keyring.WrappedKey) (map[string]types.AttributeValue, []byte, error) {
	b, err := keyring.EncodeKey(k)
	if err != nil {
		return nil, nil, err
	}
	it := itemKey(k.App, k.Period)
	it[attrValue] = &types.AttributeValueMemberB{Value: b}
	it[attrExpiry] = &types.AttributeValueMemberN{Value: strconv.FormatInt(k.DestroyAt.Unix()+1, 10)}
	return it, b, nil
}

func conditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

// Create implements keyring.KeyStore with a conditional PutItem.
func (s *Store) Create(ctx context.Context, k keyring.WrappedKey) (keyring.WrappedKey, error) {
	it, _, err := item(k)
	if err != nil {
		return keyring.WrappedKey{}, err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: it,
		ConditionExpression: aws.String("attribute_not_exists(" + attrApp + ")"),
	})
	switch {
	case err == nil:
		k.DestroyAt = k.DestroyAt.UTC()
		return k, nil
	case conditionFailed(err):
		return s.Get(ctx, k.App, k.Period) // another process stored first
	}
	return keyring.WrappedKey{}, fmt.Errorf("creating key: %w", err)
}

// Get implements keyring.KeyStore with a strongly consistent GetItem.
func (s *Store) Get(ctx context.Context, app string, v int64) (keyring.WrappedKey, error) {
	if err := keyring.ValidateApp(app); err != nil {
		return keyring.WrappedKey{}, err
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: itemKey(app, v), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return keyring.WrappedKey{}, fmt.Errorf("reading key: %w", err)
	}
	if out.Item == nil {
		return keyring.WrappedKey{}, keyring.ErrKeyNotFound
	}
	b, ok := out.Item[attrValue].(*types.AttributeValueMemberB)
	if !ok {
		return keyring.WrappedKey{}, errors.New("reading key: item has no value")
	}
	return keyring.DecodeKey(b.Value, app, v)
}

// Delete implements keyring.KeyStore.
func (s *Store) Delete(ctx context.Context, app string, v int64) error {
	if err := keyring.ValidateApp(app); err != nil {
		return err
	}
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(s.table), Key: itemKey(app, v)}); err != nil {
		return fmt.Errorf("deleting key: %w", err)
	}
	return nil
}

// List implements keyring.KeyStore with a strongly consistent Scan.
func (s *Store) List(ctx context.Context) ([]keyring.WrappedKey, error) {
	var out []keyring.WrappedKey
	p := dynamodb.NewScanPaginator(s.db, &dynamodb.ScanInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		for _, it := range page.Items {
			app, _ := it[attrApp].(*types.AttributeValueMemberS)
			ver, _ := it[attrVersion].(*types.AttributeValueMemberS)
			val, _ := it[attrValue].(*types.AttributeValueMemberB)
			if app == nil || ver == nil || val == nil || keyring.ValidateApp(app.Value) != nil {
				continue // the change counter, or not ours
			}
			v, err := strconv.ParseInt(ver.Value, 10, 64)
			if err != nil {
				continue
			}
			k, err := keyring.DecodeKey(val.Value, app.Value, v)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
	}
	return out, nil
}

// Tombstone implements keyring.KeyStore with an unconditional PutItem.
func (s *Store) Tombstone(ctx context.Context, app string, v int64, destroyAt time.Time) error {
	it, _, err := item(keyring.WrappedKey{App: app, Period: v, DestroyAt: destroyAt, Erased: true})
	if err != nil {
		return err
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: it}); err != nil {
		return fmt.Errorf("writing tombstone: %w", err)
	}
	return nil
}

// Replace implements keyring.Replacer with a PutItem conditioned on the old value.
func (s *Store) Replace(ctx context.Context, old, nw keyring.WrappedKey) error {
	ob, err := keyring.ExpectedValue(old, nw)
	if err != nil {
		return err
	}
	it, _, err := item(nw)
	if err != nil {
		return err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: it,
		ConditionExpression:       aws.String(attrValue + " = :old"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":old": &types.AttributeValueMemberB{Value: ob}},
	})
	switch {
	case err == nil:
		return nil
	case conditionFailed(err):
		if _, gerr := s.Get(ctx, old.App, old.Period); errors.Is(gerr, keyring.ErrKeyNotFound) {
			return keyring.ErrKeyNotFound
		}
		return keyring.ErrKeyChanged
	}
	return fmt.Errorf("replacing key: %w", err)
}

// Changes implements keyring.KeyStore.
func (s *Store) Changes(ctx context.Context) (int64, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: counterKey(), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return 0, fmt.Errorf("reading change counter: %w", err)
	}
	n, ok := out.Item[attrCount].(*types.AttributeValueMemberN)
	if !ok {
		return 0, nil
	}
	return strconv.ParseInt(n.Value, 10, 64)
}

func counterKey() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrApp:     &types.AttributeValueMemberS{Value: changesPK},
		attrVersion: &types.AttributeValueMemberS{Value: "0"},
	}
}

// NoteChange implements keyring.KeyStore with an atomic UpdateItem ADD.
func (s *Store) NoteChange(ctx context.Context) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: counterKey(),
		UpdateExpression:          aws.String("ADD " + attrCount + " :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}},
	})
	if err != nil {
		return fmt.Errorf("noting key change: %w", err)
	}
	return nil
}
