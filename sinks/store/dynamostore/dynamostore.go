// Package dynamostore is the encrypted store on Amazon DynamoDB, for deployments where several
// veil processes share one store.
//
// An item is one DynamoDB item in a table keyed by partition key pk (String, the app id) and sort
// key sk (String, the ref in lower-case hex), with exp (Number, the expiry in Unix seconds) as the
// table's TTL attribute and v (Binary) the sealed record. All items of an app share a partition
// key, so DeleteApp is a Query of that partition followed by batched deletes.
//
// DynamoDB's TTL deletes an expired item only eventually (typically within days), so the store
// compares exp with its clock on every Get: an item is dead from its expiry second whether or not
// DynamoDB has removed it yet. Put writes each item with a conditional PutItem (put if absent: a
// ref is sealed once); DeleteApp deletes with BatchWriteItem and retries the requests DynamoDB
// reports unprocessed, with backoff, a bounded number of times.
package dynamostore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/veil-project/veil/sinks/store"

	"github.com/veil-project/veil/internal/dynatable"
)

// Attribute names of the item layout.
const (
	attrApp    = dynatable.PartitionKey
	attrRef    = dynatable.SortKey
	attrExpiry = "exp"
	attrValue  = "v"
)

const (
	// batchSize is the most write requests BatchWriteItem takes in one call.
	batchSize = 25
	// defaultMaxAttempts bounds the BatchWriteItem calls for one chunk, the first included.
	defaultMaxAttempts = 10
	// defaultInflight bounds the BatchWriteItem calls one Put or DeleteApp has in flight.
	defaultInflight = 8
	backoffBase     = 20 * time.Millisecond
	backoffMax      = 2 * time.Second
)

// MaxValueBytes is the largest sealed record (Item.Value) an item holds: DynamoDB refuses items
// over 400 KB, attribute names and the other attributes included (those take well under 1 KiB).
// A larger value fails Put every time, so callers bound what they seal by it
// (pipeline.Transformer.MaxItemBytes).
const MaxValueBytes = 400<<10 - 1<<10

// ErrMalformed is returned by Get when the stored item lacks a well-formed exp or v attribute:
// it was not written by this package.
var ErrMalformed = errors.New("dynamostore: malformed stored item")

// ErrUnprocessed is returned by Put and DeleteApp when DynamoDB still reports some write requests
// unprocessed after every attempt. It is transient: a retry of the same call is harmless.
var ErrUnprocessed = errors.New("dynamostore: write requests left unprocessed")

// ErrClosed is returned by every call on a closed Store.
var ErrClosed = errors.New("dynamostore: store closed")

// Options configures Open. The zero value of each field is its documented default.
type Options struct {
	// Table is the DynamoDB table name. Required.
	Table string
	// Conn is where DynamoDB is and as whom to call it: region, endpoint and static keys, each
	// with the default dynatable.Conn documents (the SDK's chains, AWS itself). Open fails if no
	// region is configured.
	dynatable.Conn
	// Clock is what Get and Put compare expiries against. Default time.Now. DynamoDB's own TTL
	// always runs on AWS's clock.
	Clock func() time.Time
	// CreateTable makes Open call Store.CreateTable. Default false: Open only checks that the
	// table exists with the expected key schema.
	CreateTable bool
	// MaxAttempts bounds the BatchWriteItem calls for one chunk of 25 items while DynamoDB
	// reports some of them unprocessed. Default 10. The SDK's own retries of throttled or failed
	// calls come on top of these.
	MaxAttempts int
	// Inflight bounds the BatchWriteItem calls one Put or DeleteApp has in flight. Default 8.
	Inflight int
	// HTTPClient sends the requests, used as is (the SDK's AWS_CA_BUNDLE handling does not apply
	// to it). Default the SDK's client, keeping enough idle connections for Inflight calls.
	HTTPClient aws.HTTPClient
	// Logger receives warnings, such as a TTL that could not be enabled. Default slog.Default().
	Logger *slog.Logger
}

// String describes the options without the secret access key.
func (o Options) String() string { return fmt.Sprintf("dynamodb{table=%s %s}", o.Table, o.Conn) }

// GoString is String, so %#v does not print the secret either.
func (o Options) GoString() string { return o.String() }

// LogValue logs the options without the secret access key.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(append([]slog.Attr{slog.String("table", o.Table)}, o.Conn.LogValue().Group()...)...)
}

// Store is a store.Store on DynamoDB. It is safe for concurrent use.
type Store struct {
	db          *dynamodb.Client
	table       string
	clock       func() time.Time
	maxAttempts int
	inflight    int
	log         *slog.Logger

	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open builds a DynamoDB client and checks the table: with opts.CreateTable it creates the table
// if missing and enables its TTL (see CreateTable), otherwise it only checks that the table
// exists with pk and sk as its keys. Cancelling ctx abandons the check.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Table == "" {
		return nil, errors.New("opening dynamodb store: no table name")
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = defaultMaxAttempts
	}
	if opts.Inflight <= 0 {
		opts.Inflight = defaultInflight
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		table:       opts.Table,
		clock:       opts.Clock,
		maxAttempts: opts.MaxAttempts,
		inflight:    opts.Inflight,
		log:         opts.Logger,
	}
	// A BuildableClient, so the SDK can still apply AWS_CA_BUNDLE and its timeouts to it.
	loadOpts := []func(*config.LoadOptions) error{config.WithHTTPClient(awshttp.NewBuildableClient().
		WithTransportOptions(func(tr *http.Transport) {
			// Keep a connection per concurrent batch call of a few concurrent Puts, so steady
			// writing does not open and close connections.
			tr.MaxIdleConnsPerHost = 4 * opts.Inflight
		}))}
	db, err := dynatable.NewClient(ctx, opts.Conn, loadOpts, func(o *dynamodb.Options) {
		if opts.HTTPClient != nil {
			o.HTTPClient = opts.HTTPClient
		}
	})
	if err != nil {
		return nil, fmt.Errorf("opening dynamodb store: %w", err)
	}
	s.db = db
	if opts.CreateTable {
		err = s.CreateTable(ctx)
	} else {
		err = s.checkTable(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("opening dynamodb store: %w", err)
	}
	return s, nil
}

// CreateTable creates the table with on-demand capacity (PAY_PER_REQUEST) if it does not exist,
// waits until it is ACTIVE, checks its key schema, and enables TTL on exp. Calling it on an
// existing table is harmless. Cancelling ctx abandons the wait; the table may still be created.
//
// Enabling TTL is best effort: when UpdateTimeToLive fails with UnknownOperationException (dynalite
// does not implement it) or ValidationException (other emulators; DynamoDB while a TTL change is
// in progress), the failure is logged as a warning and CreateTable succeeds, since Get enforces
// expiry on read anyway; only the physical deletion of dead items is lost. TTL already enabled on
// another attribute, and any other failure, is returned as an error.
func (s *Store) CreateTable(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("creating table: %w", ErrClosed)
	}
	if err := dynatable.Create(ctx, s.db, s.table); err != nil {
		return fmt.Errorf("creating table %s: %w", s.table, err)
	}
	if err := s.checkTable(ctx); err != nil {
		return err
	}
	return s.enableTTL(ctx)
}

// enableTTL turns TTL on for exp unless DescribeTimeToLive says it already is.
func (s *Store) enableTTL(ctx context.Context) error {
	desc, err := s.db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.table)})
	if err == nil && desc.TimeToLiveDescription != nil {
		d := desc.TimeToLiveDescription
		switch d.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if name := aws.ToString(d.AttributeName); name != attrExpiry {
				return fmt.Errorf("enabling TTL on %s: TTL is already on attribute %q, want %q", s.table, name, attrExpiry)
			}
			return nil
		}
	}
	// A DescribeTimeToLive error is not final: UpdateTimeToLive below says what the server can do.
	_, err = s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpiry),
			Enabled:       aws.Bool(true),
		},
	})
	switch code := errorCode(err); {
	case err == nil:
		return nil
	case code == "UnknownOperationException" || code == "ValidationException":
		// Best effort: dynalite does not implement UpdateTimeToLive (UnknownOperationException)
		// and other emulators, or DynamoDB itself while a TTL change is in progress, answer
		// ValidationException. Get enforces expiry on read regardless, so only the physical
		// deletion of dead items is missing; say so loudly rather than refuse to start.
		s.log.WarnContext(ctx, "could not enable DynamoDB TTL; expired items are hidden on read but not deleted by DynamoDB",
			slog.String("table", s.table), slog.String("attribute", attrExpiry), slog.String("code", code))
		return nil
	default:
		return fmt.Errorf("enabling TTL on %s.%s: %w", s.table, attrExpiry, err)
	}
}

func errorCode(err error) string {
	var apiErr interface{ ErrorCode() string }
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// checkTable checks that the table exists with pk (String, hash) and sk (String, range) as keys.
func (s *Store) checkTable(ctx context.Context) error {
	out, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)})
	if err != nil {
		return fmt.Errorf("describing table %s: %w", s.table, err)
	}
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, d := range out.Table.AttributeDefinitions {
		attrTypes[aws.ToString(d.AttributeName)] = d.AttributeType
	}
	keys := map[string]types.KeyType{}
	for _, k := range out.Table.KeySchema {
		keys[aws.ToString(k.AttributeName)] = k.KeyType
	}
	if len(keys) != 2 || keys[attrApp] != types.KeyTypeHash || keys[attrRef] != types.KeyTypeRange ||
		attrTypes[attrApp] != types.ScalarAttributeTypeS || attrTypes[attrRef] != types.ScalarAttributeTypeS {
		return fmt.Errorf("checking table %s: key schema is not %s (String, HASH) and %s (String, RANGE)", s.table, attrApp, attrRef)
	}
	return nil
}

// Put writes the live items of items whose ref holds no record yet; see store.Store. It validates
// every app id before writing anything. BatchWriteItem takes no condition, so each item is one
// PutItem with the condition attribute_not_exists(pk) OR v = :v, several at once (Inflight × 4):
// DynamoDB evaluates the condition and the write atomically, so of two writers racing for a ref
// exactly one writes it, and a retry of the same item succeeds. An item whose condition fails is
// reported in the *ExistsError, also when the item there is past its expiry but not yet removed by
// DynamoDB's TTL: a dead record is never replaced. Items are not written atomically: on error
// some may have been written, and a retry of the same items is harmless.
func (s *Store) Put(ctx context.Context, items []store.Item) error {
	if err := store.ValidateItems(items); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	write, dups := store.Distinct(items, s.clock())
	taken := make([]bool, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * s.inflight)
	for _, i := range write {
		g.Go(func() error {
			it := items[i]
			_, err := s.db.PutItem(gctx, &dynamodb.PutItemInput{
				TableName: aws.String(s.table),
				Item: map[string]types.AttributeValue{
					attrApp:    &types.AttributeValueMemberS{Value: it.App},
					attrRef:    &types.AttributeValueMemberS{Value: hex.EncodeToString(it.Ref[:])},
					attrExpiry: &types.AttributeValueMemberN{Value: strconv.FormatInt(it.Expiry.Unix(), 10)},
					attrValue:  &types.AttributeValueMemberB{Value: it.Value},
				},
				ConditionExpression:      aws.String("attribute_not_exists(#pk) OR #v = :v"),
				ExpressionAttributeNames: map[string]string{"#pk": attrApp, "#v": attrValue},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":v": &types.AttributeValueMemberB{Value: it.Value},
				},
			})
			var failed *types.ConditionalCheckFailedException
			if errors.As(err, &failed) {
				taken[i] = true // each goroutine writes its own index only
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("putting items: %w", err)
	}
	for i, t := range taken {
		if t {
			dups = append(dups, i)
		}
	}
	return store.ExistsResult(dups)
}

type key struct {
	app string
	ref [16]byte
}

// writeAll sends reqs in chunks of batchSize, up to s.inflight chunks at once.
func (s *Store) writeAll(ctx context.Context, reqs []types.WriteRequest) error {
	if len(reqs) <= batchSize {
		return s.writeChunk(ctx, reqs)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(s.inflight)
	for start := 0; start < len(reqs); start += batchSize {
		chunk := reqs[start:min(start+batchSize, len(reqs))]
		g.Go(func() error { return s.writeChunk(ctx, chunk) })
	}
	return g.Wait()
}

// writeChunk sends one BatchWriteItem call and sends again whatever DynamoDB leaves unprocessed,
// with full-jitter exponential backoff, up to s.maxAttempts calls in all.
func (s *Store) writeChunk(ctx context.Context, reqs []types.WriteRequest) error {
	if len(reqs) == 0 {
		return nil
	}
	delay := backoffBase
	for attempt := 1; ; attempt++ {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{s.table: reqs},
		})
		if err != nil {
			return fmt.Errorf("writing batch of %d: %w", len(reqs), err)
		}
		reqs = out.UnprocessedItems[s.table]
		if len(reqs) == 0 {
			return nil
		}
		if attempt >= s.maxAttempts {
			return fmt.Errorf("%w: %d after %d attempts", ErrUnprocessed, len(reqs), attempt)
		}
		if err := sleep(ctx, rand.N(delay)+1); err != nil {
			return fmt.Errorf("retrying %d unprocessed write requests: %w", len(reqs), err)
		}
		delay = min(2*delay, backoffMax)
	}
}

// Get returns the live item for (app, ref) with a strongly consistent read; see store.Store.
func (s *Store) Get(ctx context.Context, app string, ref [16]byte) (store.Item, error) {
	if err := store.ValidateApp(app); err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	if err := s.ready(ctx); err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            itemKey(app, ref),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w", err)
	}
	if out.Item == nil {
		return store.Item{}, store.ErrNotFound
	}
	exp, ok := out.Item[attrExpiry].(*types.AttributeValueMemberN)
	if !ok {
		return store.Item{}, fmt.Errorf("getting item: %w: %s missing or not a number", ErrMalformed, attrExpiry)
	}
	unix, err := strconv.ParseInt(exp.Value, 10, 64)
	if err != nil {
		return store.Item{}, fmt.Errorf("getting item: %w: %s not an integer", ErrMalformed, attrExpiry)
	}
	v, ok := out.Item[attrValue].(*types.AttributeValueMemberB)
	if !ok {
		return store.Item{}, fmt.Errorf("getting item: %w: %s missing or not binary", ErrMalformed, attrValue)
	}
	expiry := time.Unix(unix, 0)
	if store.Expired(expiry, s.clock()) {
		return store.Item{}, store.ErrNotFound
	}
	// The SDK decodes each response into fresh slices: v.Value is the caller's to keep or change.
	return store.Item{App: app, Ref: ref, Expiry: expiry, Value: v.Value}, nil
}

// Delete removes one item; see store.Store.
func (s *Store) Delete(ctx context.Context, app string, ref [16]byte) error {
	if err := store.ValidateApp(app); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.table),
		Key:       itemKey(app, ref),
	}); err != nil {
		return fmt.Errorf("deleting item: %w", err)
	}
	return nil
}

// DeleteApp removes every item of app: it queries the app's partition for keys only, a page at a
// time, and deletes each page with BatchWriteItem as Put writes. It counts every item it removed,
// including dead ones DynamoDB had not yet removed. On error some items may have been removed; a
// retry removes the rest.
func (s *Store) DeleteApp(ctx context.Context, app string) (int, error) {
	if err := store.ValidateApp(app); err != nil {
		return 0, fmt.Errorf("deleting app: %w", err)
	}
	if err := s.ready(ctx); err != nil {
		return 0, fmt.Errorf("deleting app: %w", err)
	}
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                aws.String(s.table),
		KeyConditionExpression:   aws.String("#pk = :app"),
		ProjectionExpression:     aws.String("#pk, #sk"),
		ExpressionAttributeNames: map[string]string{"#pk": attrApp, "#sk": attrRef},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":app": &types.AttributeValueMemberS{Value: app},
		},
		ConsistentRead: aws.Bool(true),
	})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("deleting app: querying keys: %w", err)
		}
		reqs := make([]types.WriteRequest, len(page.Items))
		for i, it := range page.Items {
			reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{
				attrApp: it[attrApp],
				attrRef: it[attrRef],
			}}}
		}
		if err := s.writeAll(ctx, reqs); err != nil {
			return n, fmt.Errorf("deleting app: %w", err)
		}
		n += len(reqs)
	}
	return n, nil
}

// Close marks the store closed: every later call fails with ErrClosed. It is idempotent; calls
// in flight finish on their own, and idle connections close after the transport's idle timeout.
func (s *Store) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}

func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

func itemKey(app string, ref [16]byte) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrApp: &types.AttributeValueMemberS{Value: app},
		attrRef: &types.AttributeValueMemberS{Value: hex.EncodeToString(ref[:])},
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
