package analytics_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/testkit"
	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/analytics"
)

// cluster is an in-process Kafka with every redacted topic (3 partitions each).
type cluster struct {
	t     *testing.T
	addrs []string
	cl    *kgo.Client
	adm   *kadm.Client
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	var topics []string
	for _, l := range ledgers.All() {
		topics = append(topics, broker.RedactedTopic(l.Name))
	}
	c := testkit.Kafka(t, kfake.SeedTopics(3, topics...))
	cl := testkit.Client(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	return &cluster{t: t, addrs: c.ListenAddrs(), cl: cl, adm: kadm.NewClient(cl)}
}

// produce writes records to their topic and partition, in order.
func (c *cluster) produce(recs ...*kgo.Record) {
	c.t.Helper()
	if err := c.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		c.t.Fatalf("producing: %v", err)
	}
}

// committed returns the group's committed offset for topic/partition, or -1.
func (c *cluster) committed(group, topic string, partition int32) int64 {
	c.t.Helper()
	resp, err := c.adm.FetchOffsets(context.Background(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return -1
	}
	if err != nil {
		c.t.Fatalf("fetching offsets: %v", err)
	}
	o, ok := resp.Lookup(topic, partition)
	if !ok || o.Err != nil {
		return -1
	}
	return o.At
}

// waitCommitted waits until DefaultGroup's committed offset of topic's partition is at.
func (c *cluster) waitCommitted(t *testing.T, topic string, partition int32, at int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("offset %d of %s/%d committed", at, topic, partition), func() bool {
		return c.committed(analytics.DefaultGroup, topic, partition) == at
	})
}

// rewind sets the (empty) group's committed offset, as if a run had crashed after writing files
// but before committing them.
func (c *cluster) rewind(group, topic string, partition int32, at int64) {
	c.t.Helper()
	var offs kadm.Offsets
	offs.AddOffset(topic, partition, at, -1)
	resp, err := c.adm.CommitOffsets(context.Background(), group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		c.t.Fatalf("rewinding group: %v", err)
	}
}

// running is a sink running in the background.
type running struct {
	sink   *analytics.Sink
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	flushes []analytics.FlushStats
}

func startSink(t *testing.T, cfg analytics.Config) *running {
	t.Helper()
	r := &running{done: make(chan error, 1)}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	user := cfg.OnFlush
	cfg.OnFlush = func(st analytics.FlushStats) {
		r.mu.Lock()
		r.flushes = append(r.flushes, st)
		r.mu.Unlock()
		if user != nil {
			user(st)
		}
	}
	s, err := analytics.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.sink = s
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the sink and returns Run's error (once; later calls return nil).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("sink did not stop within 15 s")
		return nil
	}
}

// stopOK stops the sink and fails the test unless Run returned nil.
func (r *running) stopOK(t *testing.T) {
	t.Helper()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func (r *running) flushStats() []analytics.FlushStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]analytics.FlushStats(nil), r.flushes...)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, cond)
}

// produceEvents produces the app-1 event entries e-<from> … e-<to-1>, one second apart from
// hour0, on partition 0, sensitive where sensitive(i) says, and records each in want by id.
func (c *cluster) produceEvents(t *testing.T, from, to int, sensitive func(int) bool, want map[string]*schemas.Entry) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		r, e := entry(t, fmt.Sprintf("e-%03d", i), "app-1", "event", hour0.Add(time.Duration(i)*time.Second), sensitive(i), 0)
		recs = append(recs, r)
		want[e.ID] = e
	}
	c.produce(recs...)
}

// checkListRemove checks a writer whose dir holds p0-o0-o9.parquet and p1-o0-o9.parquet among
// things List must not show (files below or beside dir, temp files): List names only the two,
// Remove deletes p0, removing it again is no error, and List then names p1 alone.
func checkListRemove(t *testing.T, w analytics.Writer, dir string) {
	t.Helper()
	ctx := t.Context()
	got, err := w.List(ctx, dir)
	slices.Sort(got)
	if want := []string{"p0-o0-o9.parquet", "p1-o0-o9.parquet"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %v, %v, want %v, nil", got, err, want)
	}
	if err := w.Remove(ctx, dir+"/p0-o0-o9.parquet"); err != nil {
		t.Fatalf("Remove = %v, want nil", err)
	}
	if err := w.Remove(ctx, dir+"/p0-o0-o9.parquet"); err != nil {
		t.Fatalf("Remove(missing) = %v, want nil", err)
	}
	if got, _ := w.List(ctx, dir); !slices.Equal(got, []string{"p1-o0-o9.parquet"}) {
		t.Fatalf("List after Remove = %v, want [p1-o0-o9.parquet]", got)
	}
}

// entry builds a redacted entry record for ledger "event" or "log", as the pipeline emits it:
// sensitive values are the redacted view, the rest is as the producer sent it.
func entry(t *testing.T, id, app, ledger string, ts time.Time, sensitive bool, partition int32) (*kgo.Record, *schemas.Entry) {
	t.Helper()
	e := &schemas.Entry{
		ID: id, AppID: app, Ledger: ledger, TS: ts,
		Thread: schemas.Thread{ID: "t-" + id, Mode: "agent"},
		User:   schemas.User{ID: "u-" + app, Type: "user"},
	}
	switch ledger {
	case "event":
		e.Type = "meya.text.event.say"
		e.Data = map[string]any{"text": "hello", "lang": "en"}
		if sensitive {
			e.Data["text"] = envelope.Redacted
		}
	case "log":
		e.Type = "meya.log.entry"
		e.Data = map[string]any{"message": "started", "attributes": map[string]any{"n": 1.0}}
		if sensitive {
			e.Data["message"] = envelope.Redacted
			e.Data["attributes"] = envelope.Redacted
		}
	default:
		t.Fatalf("no entry template for ledger %s", ledger)
	}
	if sensitive {
		yes := true
		e.Sensitive = &yes
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: broker.RedactedTopic(ledger), Partition: partition, Key: []byte(e.Thread.ID), Value: b}, e
}

// readTree reads every Parquet file under root, keyed by slash path, and fails on leftover
// temporary files.
func readTree(t *testing.T, root string) map[string][]analytics.Row {
	t.Helper()
	files := make(map[string][]analytics.Row)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			return fmt.Errorf("leftover temporary file %s", rel)
		}
		rows, err := parquet.ReadFile[analytics.Row](p)
		if err != nil {
			return fmt.Errorf("reading %s: %w", rel, err)
		}
		files[rel] = rows
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func countRows(files map[string][]analytics.Row) int {
	n := 0
	for _, rows := range files {
		n += len(rows)
	}
	return n
}

// checkRows checks that files hold each of want exactly once, with every column as the entry
// says, in the file's partition directory.
func checkRows(t *testing.T, files map[string][]analytics.Row, want map[string]*schemas.Entry) {
	t.Helper()
	seen := make(map[string]string)
	for name, rows := range files {
		for _, row := range rows {
			if prev, dup := seen[row.ID]; dup {
				t.Errorf("row %s is in %s and in %s", row.ID, prev, name)
				continue
			}
			seen[row.ID] = name
			e, ok := want[row.ID]
			if !ok {
				t.Errorf("%s holds unexpected row %s", name, row.ID)
				continue
			}
			dir := fmt.Sprintf("app=%s/ledger=%s/date=%s/hour=%s", e.AppID, e.Ledger,
				e.TS.UTC().Format("2006-01-02"), e.TS.UTC().Format("15"))
			if got := filepath.ToSlash(filepath.Dir(filepath.FromSlash(name))); got != dir {
				t.Errorf("row %s in dir %s, want %s", row.ID, got, dir)
			}
			wantData, err := json.Marshal(e.Data, json.Deterministic(true))
			if err != nil {
				t.Fatal(err)
			}
			wantRow := analytics.Row{
				ID: e.ID, AppID: e.AppID, Ledger: e.Ledger, Type: e.Type, TS: e.TS.UTC(),
				ThreadID: e.Thread.ID, ThreadMode: e.Thread.Mode, UserID: e.User.ID, UserType: e.User.Type,
				Sensitive: e.Sensitive != nil && *e.Sensitive, Data: string(wantData),
			}
			if !row.TS.Equal(wantRow.TS) {
				t.Errorf("row %s: ts = %v, want %v", row.ID, row.TS, wantRow.TS)
			}
			row.TS = wantRow.TS
			if row != wantRow {
				t.Errorf("row %s = %+v, want %+v", row.ID, row, wantRow)
			}
			checkRedacted(t, row)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("files hold %d distinct rows, want %d", len(seen), len(want))
	}
}

// checkRedacted fails when a sensitive row's sensitive field holds anything but the redacted view.
func checkRedacted(t *testing.T, row analytics.Row) {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal([]byte(row.Data), &data); err != nil {
		t.Errorf("row %s: data is not a JSON object: %v", row.ID, err)
		return
	}
	fields := map[string][]string{"event": {"text"}, "log": {"message", "attributes"}}[row.Ledger]
	for _, f := range fields {
		v, _ := data[f].(string)
		if row.Sensitive && v != envelope.Redacted {
			t.Errorf("row %s: data.%s = %v, want %s", row.ID, f, data[f], envelope.Redacted)
		}
		if !row.Sensitive && v == envelope.Redacted {
			t.Errorf("row %s: non-sensitive data.%s is redacted", row.ID, f)
		}
	}
}
