package broker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/crypto/kmslocal"
)

func testKMS(t *testing.T, seed byte) *kmslocal.Provider {
	t.Helper()
	p, err := kmslocal.New(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startRaw(t *testing.T, dir string, k KMS) (*Embedded, error) {
	t.Helper()
	e, err := StartEmbedded(t.Context(), EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(),
		SyncInterval: 100 * time.Millisecond, KMS: k, KeyID: kmslocal.DefaultKeyID})
	if err == nil {
		t.Cleanup(func() { e.Close(context.Background()) })
	}
	return e, err
}

// rawClient connects to e with manual partitioning (closed when t ends) and creates the topics of
// the first test ledger with partitions partitions.
func rawClient(t *testing.T, e *Embedded, partitions int) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if err := EnsureTopics(t.Context(), adm, testLedgers[:1], partitions); err != nil {
		t.Fatal(err)
	}
	return cl, adm
}

// rawKept returns the raw entries of topic/p kept in dir, opened with k.
func rawKept(t *testing.T, dir string, k KMS, topic string, p int32) []logEntry {
	t.Helper()
	rk, err := newRawKeys(k, kmslocal.DefaultKeyID, filepath.Join(dir, rawKeysDir))
	if err != nil {
		t.Fatal(err)
	}
	kp := &keeper{dir: dir, raw: rk}
	ents, err := kp.readRaw(t.Context(), tp{topic, p}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// TestEmbeddedRawKeptSealed: with a KMS, acknowledged raw records survive a restart (graceful or
// a crash copy) at their offsets, with the raw group offsets, and never reach the disk in
// plaintext; a copy of the data directory opened without the KMS's key reveals nothing; raw
// files and keys past retention are deleted, and their offsets are not reused.
func TestEmbeddedRawKeptSealed(t *testing.T) {
	const canary = "CANARY-raw-say-text-5d1e"
	kms := testKMS(t, 7)
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			e, err := startRaw(t, dir, kms)
			if err != nil {
				t.Fatal(err)
			}
			cl, adm := rawClient(t, e, 2)
			raw := RawTopic("event")
			var want []string
			for i := range 10 {
				v := fmt.Sprintf("%s-%d", canary, i)
				want = append(want, v)
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: raw, Partition: int32(i % 2), Key: []byte("t-1"), Value: []byte(v)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			// veil processed the first two of partition 0.
			if _, err := adm.CommitOffsets(ctx, "veil", kadm.Offsets{raw: {0: {Topic: raw, Partition: 0, At: 2, LeaderEpoch: -1}}}); err != nil {
				t.Fatal(err)
			}
			if crash {
				deadline := time.Now().Add(10 * time.Second)
				for len(rawKept(t, dir, kms, raw, 0))+len(rawKept(t, dir, kms, raw, 1)) < 10 {
					if time.Now().After(deadline) {
						t.Fatal("raw records not kept in time")
					}
					time.Sleep(20 * time.Millisecond)
				}
				waitFile(t, filepath.Join(dir, offsetsFile), "veil")
				copied := t.TempDir()
				if err := os.CopyFS(copied, os.DirFS(dir)); err != nil {
					t.Fatal(err)
				}
				e.Close(ctx)
				assertNotOnDisk(t, dir, "CANARY-raw") // the copy's file modes are os.CopyFS's
				dir = copied
			} else {
				if err := e.Close(ctx); err != nil {
					t.Fatal(err)
				}
				assertNotOnDisk(t, dir, "CANARY-raw")
			}

			// Without the KMS key that wrapped them, the files open nothing.
			other := t.TempDir()
			if err := os.CopyFS(other, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			if _, err := startRaw(t, other, testKMS(t, 8)); err == nil || strings.Contains(err.Error(), "CANARY") {
				t.Errorf("start with another KMS key = %v, want an error that reveals nothing", err)
			}

			e, err = startRaw(t, dir, kms)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for p := range int32(2) {
				pl := snapshotPartition(t, e.Addrs(), raw, p)
				if pl.end != 5 || pl.start != 0 {
					t.Errorf("partition %d after restart: offsets %d..%d, want 0..5", p, pl.start, pl.end)
				}
				for off := range int64(5) {
					if v, ok := pl.values[off]; !ok || v != want[2*off+int64(p)] {
						t.Errorf("partition %d offset %d = %q, want %q", p, off, v, want[2*off+int64(p)])
					}
					got = append(got, pl.values[off])
				}
			}
			if len(got) != 10 {
				t.Errorf("restored %d raw records, want 10", len(got))
			}
			cl2, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl2.Close()
			offs, err := kadm.NewClient(cl2).FetchOffsets(ctx, "veil")
			if err != nil {
				t.Fatal(err)
			}
			if o, _ := offs.Lookup(raw, 0); o.At != 2 {
				t.Errorf("veil's raw offset after restart = %d, want 2", o.At)
			}

			// Past retention, files and keys are deleted; the offsets stay.
			e.keep.shredRaw(time.Now().Add(48 * time.Hour))
			for p := range int32(2) {
				for _, en := range rawKept(t, dir, kms, raw, p) {
					if en.rec != nil {
						t.Errorf("raw record %d/%d kept after retention", p, en.rec.Offset)
					}
				}
			}
			if keys, _ := os.ReadDir(filepath.Join(dir, rawKeysDir)); len(keys) != 0 {
				t.Errorf("%d raw keys after retention, want none", len(keys))
			}
			if err := e.Close(ctx); err != nil {
				t.Fatal(err)
			}
			e, err = startRaw(t, dir, kms)
			if err != nil {
				t.Fatal(err)
			}
			pl := snapshotPartition(t, e.Addrs(), raw, 0)
			if len(pl.values) != 0 || pl.end != 5 || pl.start != 5 {
				t.Errorf("raw partition after retention: %d values, offsets %d..%d; want none, 5..5", len(pl.values), pl.start, pl.end)
			}
			// A TTL shortened since the last run applies to the restored raw topic.
			if err := e.Close(ctx); err != nil {
				t.Fatal(err)
			}
			shorter := []LedgerTTL{{"event", time.Hour}}
			e, err = StartEmbedded(ctx, EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(),
				KMS: kms, KeyID: kmslocal.DefaultKeyID, Ledgers: shorter})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close(ctx)
			cl3, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl3.Close()
			if vs, err := CheckRetention(ctx, kadm.NewClient(cl3), shorter); err != nil || len(vs) != 0 {
				t.Errorf("CheckRetention after restart with a shorter TTL = %v, %v; want none", vs, err)
			}
			if slices.Contains(got, "") {
				t.Error("a restored raw record is empty")
			}
		})
	}
}

// A sealed raw record altered on disk (its frame CRC fixed up, so it does not read as a torn
// tail) fails the start: nothing is restored from a directory that is not what veil wrote, and
// the error reveals nothing.
func TestEmbeddedRawTamperFailsClosed(t *testing.T) {
	ctx := t.Context()
	kms := testKMS(t, 5)
	dir := t.TempDir()
	e, err := startRaw(t, dir, kms)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := rawClient(t, e, 1)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: RawTopic("event"), Value: []byte("CANARY-tamper")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	kp := &keeper{dir: dir}
	ws, _ := kp.rawFiles(tp{RawTopic("event"), 0})
	if len(ws) != 1 {
		t.Fatalf("raw windows %v, want one", ws)
	}
	path := kp.rawPath(tp{RawTopic("event"), 0}, ws[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1 // the last byte of the GCM tag
	payload := b[8:]
	copy(b, frame(payload, b[:8+len(payload)]))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = startRaw(t, dir, kms)
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("start on a tampered raw file = %v, want an error that reveals nothing", err)
	}
	if !strings.Contains(err.Error(), "opening raw record") {
		t.Errorf("start on a tampered raw file = %v, want the record's authentication to fail", err)
	}
}
