package dynamostore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/veil-project/veil/internal/dynatable"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/storetest"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/sinks/store"

	"github.com/veil-project/veil/internal/testkit"
)

// dynalite accepts any credentials; these only make the SDK sign its requests.
const (
	testKeyID  = "AKIDVEILTEST"
	testSecret = "veil-test-secret-do-not-print"
	testRegion = "us-east-1"
)

func tableName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "veil-test-" + hex.EncodeToString(b)
}

// openTable opens a store on a fresh table of the dynalite at endpoint.
func openTable(t testing.TB, endpoint string, mod func(*Options)) *Store {
	t.Helper()
	opts := Options{
		Table:       tableName(),
		Conn:        dynatable.Conn{Region: testRegion, Endpoint: endpoint, AccessKeyID: testKeyID, SecretAccessKey: testSecret},
		CreateTable: true,
		Logger:      slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v, want nil", opts.Table, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	storetest.Run(t, func(t *testing.T, clock func() time.Time) store.Store {
		if strings.HasSuffix(t.Name(), "/NativeTTL") {
			// DynamoDB deletes expired items eventually (within days), never within the seconds
			// this case waits, and dynalite has no TTL at all. The store hides dead items on read,
			// which ExpiryEnforcedOnRead and PutSkipsExpired check.
			t.Skip("DynamoDB TTL deletion is not prompt; expiry is enforced on read")
		}
		return openTable(t, endpoint, func(o *Options) { o.Clock = clock })
	})
}

// rawClient is a plain SDK client on the same server, to look at and plant items.
func rawClient(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       testRegion,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(testKeyID, testSecret, ""),
	})
}

// TestLayout checks the stored form other tools and operators rely on: pk the app id, sk the hex
// ref, exp the expiry in Unix seconds, v the sealed value.
func TestLayout(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	ctx := t.Context()
	s := openTable(t, endpoint, nil)
	defer s.Close(context.Background())
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	it := store.Item{App: "app-42", Ref: [16]byte{0xab, 15: 0x01}, Expiry: exp, Value: []byte("sealed")}
	if err := s.Put(ctx, []store.Item{it}); err != nil {
		t.Fatalf("Put() = %v, want nil", err)
	}
	raw := rawClient(endpoint)
	out, err := raw.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "app-42"},
			"sk": &types.AttributeValueMemberS{Value: "ab000000000000000000000000000001"},
		},
	})
	if err != nil || out.Item == nil {
		t.Fatalf("GetItem(pk app-42, sk ab…01) = %v, %v, want the item", out, err)
	}
	if got, ok := out.Item["exp"].(*types.AttributeValueMemberN); !ok || got.Value != strconv.FormatInt(exp.Unix(), 10) {
		t.Errorf("exp = %#v, want N %d", out.Item["exp"], exp.Unix())
	}
	if got, ok := out.Item["v"].(*types.AttributeValueMemberB); !ok || string(got.Value) != "sealed" {
		t.Errorf("v = %#v, want B \"sealed\"", out.Item["v"])
	}
	if len(out.Item) != 4 {
		t.Errorf("item has %d attributes, want 4 (pk, sk, exp, v)", len(out.Item))
	}

	// Items this package did not write are reported, not taken for items.
	for _, tc := range []struct {
		name string
		attr map[string]types.AttributeValue
	}{
		{"no exp", map[string]types.AttributeValue{"v": &types.AttributeValueMemberB{Value: []byte("x")}}},
		{"exp a string", map[string]types.AttributeValue{
			"exp": &types.AttributeValueMemberS{Value: "1"}, "v": &types.AttributeValueMemberB{Value: []byte("x")}}},
		{"exp fractional", map[string]types.AttributeValue{
			"exp": &types.AttributeValueMemberN{Value: "1.5"}, "v": &types.AttributeValueMemberB{Value: []byte("x")}}},
		{"no v", map[string]types.AttributeValue{"exp": &types.AttributeValueMemberN{Value: "99999999999"}}},
		{"v a string", map[string]types.AttributeValue{
			"exp": &types.AttributeValueMemberN{Value: "99999999999"}, "v": &types.AttributeValueMemberS{Value: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ref [16]byte
			rand.Read(ref[:])
			item := map[string]types.AttributeValue{
				"pk": &types.AttributeValueMemberS{Value: "app-42"},
				"sk": &types.AttributeValueMemberS{Value: hex.EncodeToString(ref[:])},
			}
			for k, v := range tc.attr {
				item[k] = v
			}
			if _, err := raw.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
				t.Fatalf("PutItem() = %v", err)
			}
			if _, err := s.Get(ctx, "app-42", ref); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Get(%s) = %v, want ErrMalformed", tc.name, err)
			}
		})
	}
}

// faultTransport sits between the store and a real dynalite and makes DynamoDB's partial
// successes happen on demand: of each BatchWriteItem call it forwards only the first keep write
// requests and answers the rest as UnprocessedItems, as DynamoDB does when throttled. Every other
// call passes through untouched.
type faultTransport struct {
	keep  int // write requests forwarded per call; 0 forwards none
	calls atomic.Int64
	sent  atomic.Int64 // write requests forwarded to dynalite
}

func (f *faultTransport) Do(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".BatchWriteItem") {
		return http.DefaultClient.Do(req)
	}
	f.calls.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	var in struct {
		RequestItems map[string][]json.RawMessage
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("faultTransport: decoding request: %w", err)
	}
	forward := map[string][]json.RawMessage{}
	unprocessed := map[string][]json.RawMessage{}
	for table, reqs := range in.RequestItems {
		k := min(f.keep, len(reqs))
		if k > 0 {
			forward[table] = reqs[:k]
			f.sent.Add(int64(k))
		}
		if k < len(reqs) {
			unprocessed[table] = reqs[k:]
		}
	}
	if len(forward) > 0 {
		fwdBody, _ := json.Marshal(map[string]any{"RequestItems": forward})
		fwd := req.Clone(req.Context())
		fwd.Body, fwd.ContentLength = io.NopCloser(bytes.NewReader(fwdBody)), int64(len(fwdBody))
		// The signature covers the original body; dynalite does not check it.
		resp, err := http.DefaultClient.Do(fwd)
		if err != nil {
			return nil, err
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("faultTransport: dynalite answered %d: %s", resp.StatusCode, got)
		}
	}
	out, _ := json.Marshal(map[string]any{"UnprocessedItems": unprocessed})
	return &http.Response{
		StatusCode:    http.StatusOK,
		Status:        "200 OK",
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.0"}, "X-Amz-Crc32": {strconv.FormatUint(uint64(crc32.ChecksumIEEE(out)), 10)}},
		Body:          io.NopCloser(bytes.NewReader(out)),
		ContentLength: int64(len(out)),
		Request:       req,
	}, nil
}

func newItems(app string, n int) []store.Item {
	items := make([]store.Item, n)
	for i := range items {
		items[i] = store.Item{App: app, Expiry: time.Now().Add(time.Hour), Value: make([]byte, 100)}
		rand.Read(items[i].Ref[:])
		rand.Read(items[i].Value)
	}
	return items
}

func TestDeleteAppRetriesUnprocessed(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name      string
		n, keep   int
		wantCalls int64 // BatchWriteItem calls, retries included
	}{
		// 10 full chunks of 25, each taking 4 calls at 7 a call (7+7+7+4).
		{"large batch", 250, 7, 10 * 4},
		// One short chunk forwarded one request at a time.
		{"one request a call", 5, 1, 5},
		{"no retry needed", 60, 25, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &faultTransport{keep: tc.keep}
			s := openTable(t, endpoint, func(o *Options) { o.HTTPClient = ft })
			defer s.Close(context.Background())
			items := newItems("retry", tc.n)
			// Put writes with conditional PutItem calls, which the fault transport passes on.
			if err := s.Put(ctx, items); err != nil {
				t.Fatalf("Put(%d items) = %v, want nil", tc.n, err)
			}
			for _, want := range items {
				got, err := s.Get(ctx, want.App, want.Ref)
				if err != nil || !bytes.Equal(got.Value, want.Value) {
					t.Fatalf("Get(%x) = %d bytes, %v, want the %d bytes written", want.Ref, len(got.Value), err, len(want.Value))
				}
			}
			ft.calls.Store(0)
			if got, err := s.DeleteApp(ctx, "retry"); err != nil || got != tc.n {
				t.Fatalf("DeleteApp() through faults = %d, %v, want %d, nil", got, err, tc.n)
			}
			if got := ft.calls.Load(); got != tc.wantCalls {
				t.Errorf("BatchWriteItem calls = %d, want %d", got, tc.wantCalls)
			}
			if got := ft.sent.Load(); got != int64(tc.n) {
				t.Errorf("delete requests reaching the server = %d, want %d (each exactly once)", got, tc.n)
			}
			for _, it := range items {
				if _, err := s.Get(ctx, it.App, it.Ref); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("Get(deleted) = %v, want ErrNotFound", err)
				}
			}
		})
	}
}

func TestDeleteAppGivesUpOnUnprocessed(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	ft := &faultTransport{keep: 0}
	s := openTable(t, endpoint, func(o *Options) { o.HTTPClient = ft; o.MaxAttempts = 4 })
	defer s.Close(context.Background())
	items := newItems("stuck", 25)
	if err := s.Put(t.Context(), items); err != nil {
		t.Fatalf("Put() = %v, want nil", err)
	}
	ft.calls.Store(0)
	if _, err := s.DeleteApp(t.Context(), "stuck"); !errors.Is(err, ErrUnprocessed) {
		t.Fatalf("DeleteApp() with nothing ever processed = %v, want ErrUnprocessed", err)
	}
	if got := ft.calls.Load(); got != 4 {
		t.Errorf("BatchWriteItem calls = %d, want 4 (MaxAttempts)", got)
	}
	for _, it := range items {
		if _, err := s.Get(t.Context(), it.App, it.Ref); err != nil {
			t.Fatalf("Get(never deleted) = %v, want the item", err)
		}
	}

	// Cancelling ctx ends the backoff at once.
	slow := openTable(t, endpoint, func(o *Options) { o.HTTPClient = ft; o.MaxAttempts = 1000 })
	defer slow.Close(context.Background())
	if err := slow.Put(t.Context(), items[:1]); err != nil {
		t.Fatalf("Put() = %v, want nil", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := slow.DeleteApp(ctx, "stuck"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DeleteApp() until ctx ends = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("DeleteApp() returned %v after ctx ended, want promptly", d)
	}
}

func TestPutDuplicateRefs(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	ctx := t.Context()
	s := openTable(t, endpoint, nil)
	defer s.Close(context.Background())
	items := newItems("dup", 3)
	items[1].Ref = items[0].Ref
	items[2].Ref = items[0].Ref
	// One call naming a ref thrice: the first is written, the others are reported.
	err := s.Put(ctx, items)
	if got, ok := store.Existing(err); !ok || fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("Put(same ref thrice) = %v, want an ExistsError naming items 1 and 2", err)
	}
	got, err := s.Get(ctx, "dup", items[0].Ref)
	if err != nil || !bytes.Equal(got.Value, items[0].Value) {
		t.Fatalf("Get() = %v, want the first item's value", err)
	}
}

func TestOpenChecksTable(t *testing.T) {
	endpoint := testsvc.Dynalite(t)
	ctx := t.Context()
	base := Options{Conn: dynatable.Conn{Region: testRegion, Endpoint: endpoint, AccessKeyID: testKeyID, SecretAccessKey: testSecret}}

	missing := base
	missing.Table = tableName()
	if s, err := Open(ctx, missing); err == nil {
		s.Close(ctx)
		t.Fatalf("Open(missing table) = nil error, want an error")
	}

	wrong := base
	wrong.Table = tableName()
	if _, err := rawClient(endpoint).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(wrong.Table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
	}); err != nil {
		t.Fatalf("CreateTable(id) = %v", err)
	}
	for _, create := range []bool{false, true} {
		o := wrong
		o.CreateTable = create
		if s, err := Open(ctx, o); err == nil || !strings.Contains(err.Error(), "key schema") {
			if s != nil {
				s.Close(ctx)
			}
			t.Errorf("Open(other key schema, CreateTable %t) = %v, want a key schema error", create, err)
		}
	}

	// CreateTable on an existing table is harmless, and Open without it then finds the table.
	var logs syncBuf
	created := base
	created.Table, created.CreateTable = tableName(), true
	created.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	for i := range 2 {
		s, err := Open(ctx, created)
		if err != nil {
			t.Fatalf("Open(CreateTable) #%d = %v, want nil", i+1, err)
		}
		s.Close(ctx)
	}
	// dynalite has no UpdateTimeToLive: the store says so and carries on.
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "UnknownOperationException") {
		t.Errorf("log = %q, want a warning naming UnknownOperationException", got)
	}
	created.CreateTable = false
	s, err := Open(ctx, created)
	if err != nil {
		t.Fatalf("Open(existing table) = %v, want nil", err)
	}
	s.Close(ctx)
}

func TestOpenOptions(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no table", Options{Conn: dynatable.Conn{Region: testRegion}}},
		{"key id without secret", Options{Table: "t", Conn: dynatable.Conn{Region: testRegion, AccessKeyID: testKeyID}}},
		// Port 1 on loopback refuses connections.
		{"unreachable", Options{Table: "t", Conn: dynatable.Conn{Region: testRegion, Endpoint: "http://127.0.0.1:1", AccessKeyID: testKeyID, SecretAccessKey: testSecret}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			s, err := Open(ctx, tc.opts)
			if err == nil {
				s.Close(ctx)
				t.Fatalf("Open(%s) = nil error, want an error", tc.name)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("Open(%s) error contains the secret access key", tc.name)
			}
		})
	}
}

func TestOptionsRedact(t *testing.T) {
	o := Options{Table: "t", Conn: dynatable.Conn{Region: testRegion, AccessKeyID: testKeyID, SecretAccessKey: testSecret}}
	// Printed's %s is String, its slog JSON what LogValue logs.
	leakcheck.Printed(t, o, []string{testSecret}, testKeyID)
	if got, want := o.String(), "dynamodb{table=t region="+testRegion+" key="+testKeyID+" secret=[redacted] endpoint=}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func BenchmarkPut(b *testing.B) {
	endpoint := testsvc.Dynalite(b)
	s := openTable(b, endpoint, nil)
	defer s.Close(context.Background())
	storetest.Bench(b, s)
}

type syncBuf = testkit.Buffer
