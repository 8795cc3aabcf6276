package pipeline_test

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
)

// TestBlobStagingBoundToApp: an entry of app-2 that names app-1's staged media, by any spelling,
// is dead-lettered with a reason and leaves app-1's file in place; app-1's own entry then seals
// it. (Before, app-2's entry sealed app-1's file under app-2's key and deleted app-1's copy.)
func TestBlobStagingBoundToApp(t *testing.T) {
	h := newHarness(t)
	svc, staging := h.blobService("app-1", "app-2")
	defer svc.Close(context.Background())
	tr := *h.tr
	tr.Blobs = svc

	victim := filepath.Join(staging, "app-1", "upload-42.jpg")
	media := bytes.Repeat([]byte("CANARY-app-1-media "), 1000)
	if err := os.WriteFile(victim, media, 0o600); err != nil {
		t.Fatal(err)
	}
	// A staging path at the shared root, where the old layout kept every app's files.
	if err := os.WriteFile(filepath.Join(staging, "shared.jpg"), media, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "app-1", "upload-42.jpg"), filepath.Join(staging, "app-2", "link.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(staging, "app-1"), filepath.Join(staging, "app-2", "dirlink")); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	entry := func(app, id, object string) *kgo.Record {
		o := strings.ReplaceAll(strings.ReplaceAll(object, `\`, `\\`), `"`, `\"`)
		return &kgo.Record{Topic: broker.RawTopic("blob"), Key: []byte("t"), Value: []byte(`{"id":"` + id + `","app_id":"` + app + `","ledger":"blob","type":"meya.blob.entry","ts":"` + now + `","data":{"object":"` + o + `"}}`)}
	}
	hostile := []string{
		"app-1/upload-42.jpg",
		victim,
		"./app-1/upload-42.jpg",
		"app-2/../app-1/upload-42.jpg",
		"app-2/link.jpg",
		"app-2/dirlink/upload-42.jpg",
		"APP-1/upload-42.jpg",
		"App-2/../app-1/upload-42.jpg",
		"app-2/%2e%2e/app-1/upload-42.jpg",
		url.PathEscape("app-2/../app-1/upload-42.jpg"),
		"app-2//../app-1/upload-42.jpg",
		`app-2\..\app-1\upload-42.jpg`,
		"shared.jpg",
		"app-2",
		"s3://veil-staging/app-1/upload-42.jpg",
		"file://" + victim,
	}
	var recs []*kgo.Record
	for i, o := range hostile {
		recs = append(recs, entry("app-2", "h"+string(rune('a'+i)), o))
	}
	h.produce(recs...)
	stop := h.run(pipeline.Config{Transformer: &tr})
	defer stop()
	dl := h.consume(len(hostile), 30*time.Second, broker.DeadLetterTopic)
	if len(dl) != len(hostile) {
		t.Fatalf("dead letters = %d, want %d (one per hostile reference)", len(dl), len(hostile))
	}
	for _, r := range dl {
		if !strings.Contains(string(r.Value), `"reason":"invalid_field"`) || !strings.Contains(string(r.Value), "data.object") {
			t.Errorf("dead letter = %.300s, want reason invalid_field on data.object", r.Value)
		}
		if bytes.Contains(r.Value, []byte("CANARY")) {
			t.Errorf("plaintext media in a dead letter")
		}
	}
	if b, err := os.ReadFile(victim); err != nil || !bytes.Equal(b, media) {
		t.Fatalf("app-1's staged media after app-2's references: %d bytes, %v; want untouched", len(b), err)
	}

	// The owner's reference still works. It follows the hostile entries on the same partition, so
	// a hostile entry that was sealed would be among the first two outputs.
	h.produce(entry("app-1", "own", "app-1/upload-42.jpg"))
	out := h.consume(2, 30*time.Second, broker.EncryptedTopic("blob"), broker.RedactedTopic("blob"))
	var sealed bool
	for _, r := range out {
		if !bytes.Contains(r.Value, []byte(`"id":"own"`)) {
			t.Fatalf("an app-2 entry naming app-1's media was sealed: %.300s", r.Value)
		}
		if r.Topic != broker.EncryptedTopic("blob") {
			continue
		}
		e := decodeOutput(t, r)
		v, _ := e.Get(schemas.MustParsePath("data.object"))
		s, _ := v.(string)
		m, status, err := svc.Open(context.Background(), s)
		if err != nil || status != blob.StatusOK {
			t.Fatalf("opening app-1's sealed media: %v %v", status, err)
		}
		got, _ := io.ReadAll(m)
		m.Close()
		sealed = bytes.Equal(got, media)
	}
	if !sealed {
		t.Errorf("app-1's own entry did not seal its staged media (outputs: %d)", len(out))
	}
}
