package pipeline_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
	"github.com/veil-project/veil/sinks/store"
)

// TestBlobMediaSealedToBlobStore: blob entries' media leave the entry for the blob store, sealed
// under their own DEK; the tokens reopen the exact bytes; the staging copy is gone after commit;
// no plaintext reaches the blob directory; a missing staged object is dead-lettered.
func TestBlobMediaSealedToBlobStore(t *testing.T) {
	h := newHarness(t)
	svc, staging := h.blobService("app-1")
	defer svc.Close(context.Background())
	tr := *h.tr
	tr.Blobs = svc

	inline := bytes.Repeat([]byte("CANARY-inline-media "), 5000) // ~100 KB, several chunks
	staged := bytes.Repeat([]byte("CANARY-staged-media "), 20000)
	if err := os.WriteFile(filepath.Join(staging, "app-1", "photo.bin"), staged, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	entry := func(id, data string) []byte {
		return []byte(`{"id":"` + id + `","app_id":"app-1","ledger":"blob","type":"meya.blob.entry","ts":"` + now + `","data":` + data + `}`)
	}
	h.produce(
		&kgo.Record{Topic: broker.RawTopic("blob"), Key: []byte("t"), Value: entry("b1", `{"content":"`+base64.StdEncoding.EncodeToString(inline)+`","filename":"CANARY-name.png"}`)},
		&kgo.Record{Topic: broker.RawTopic("blob"), Key: []byte("t"), Value: entry("b2", `{"object":"app-1/photo.bin","filename":"x.bin"}`)},
		&kgo.Record{Topic: broker.RawTopic("blob"), Key: []byte("t"), Value: entry("b3", `{"object":"app-1/missing.bin"}`)},
	)
	stop := h.run(pipeline.Config{Transformer: &tr})
	defer stop()
	out := h.consume(4, 30*time.Second, broker.EncryptedTopic("blob"), broker.RedactedTopic("blob"))
	dl := h.consume(1, 10*time.Second, broker.DeadLetterTopic)
	if len(out) != 4 || len(dl) != 1 {
		t.Fatalf("outputs = %d, dead letters = %d; want 4 and 1", len(out), len(dl))
	}
	if !strings.Contains(string(dl[0].Value), `"reason":"invalid_field"`) || !strings.Contains(string(dl[0].Value), "data.object") {
		t.Errorf("dead letter for the missing staged object = %s", dl[0].Value)
	}
	want := map[string][]byte{"b1": inline, "b2": staged}
	for _, r := range out {
		if bytes.Contains(r.Value, []byte("CANARY")) {
			t.Fatalf("plaintext in %s: %.200s", r.Topic, r.Value)
		}
		e := decodeOutput(t, r)
		p := "data.content"
		if e.ID == "b2" {
			p = "data.object"
		}
		v, _ := e.Get(schemas.MustParsePath(p))
		s, _ := v.(string)
		if strings.HasPrefix(r.Topic, broker.RedactedPrefix) {
			if s != envelope.Redacted {
				t.Errorf("%s %s %s = %q, want redacted", r.Topic, e.ID, p, s)
			}
			continue
		}
		m, status, err := svc.Open(context.Background(), s)
		if err != nil || status != blob.StatusOK {
			t.Fatalf("opening %s media: %v %v", e.ID, status, err)
		}
		got, err := io.ReadAll(m)
		m.Close()
		if err != nil || !bytes.Equal(got, want[e.ID]) {
			t.Errorf("%s media reopened to %d bytes (err %v), want %d exact bytes", e.ID, len(got), err, len(want[e.ID]))
		}
	}
	if _, err := os.Stat(filepath.Join(staging, "app-1", "photo.bin")); !os.IsNotExist(err) {
		t.Errorf("staged media still present after commit (stat err %v)", err)
	}
	if scanned := leakcheck.Dir(t, h.dataDir, "plaintext media", []byte("CANARY")); scanned == 0 {
		t.Fatal("scanned no files")
	}
}

// TestBlobTokenNotRevealable: the reveal path refuses a blob token (it would hand out the media
// DEK); media are read only through the blob service.
func TestBlobTokenNotRevealable(t *testing.T) {
	h := newHarness(t)
	svc, _ := h.blobService()
	ref := pipeline.RefFor("app-1", "b1", pipeline.Source{Topic: "ledger.blob"})
	tok, item, _, err := svc.Seal(context.Background(), "app-1", "blob", ref, time.Now().Add(time.Hour), strings.NewReader("media"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Put(context.Background(), []store.Item{item}); err != nil {
		t.Fatal(err)
	}
	v, status, err := h.opener.Open(context.Background(), tok.Encode())
	if err != nil || status != reveal.StatusDenied || v != nil {
		t.Fatalf("revealing a blob token = %q, %s, %v; want denied with no value", v, status, err)
	}
}
