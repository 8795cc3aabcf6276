package analytics_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/analytics"
)

// startVersity runs versitygw (testsvc.VersityGW) and returns a client for it with one bucket
// created.
func startVersity(t *testing.T, bucket string) *s3.Client {
	t.Helper()
	srv := testsvc.VersityGW(t)
	cl := s3.New(s3.Options{
		Region:       srv.Region,
		BaseEndpoint: aws.String(srv.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
	if _, err := cl.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("creating bucket: %v", err)
	}
	return cl
}

// readBucket reads every object under prefix as a Parquet file, keyed by its name below prefix.
func readBucket(t *testing.T, cl *s3.Client, bucket, prefix string) map[string][]analytics.Row {
	t.Helper()
	ctx := context.Background()
	files := make(map[string][]analytics.Row)
	p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing bucket: %v", err)
		}
		for _, o := range out.Contents {
			key := aws.ToString(o.Key)
			obj, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("getting %s: %v", key, err)
			}
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil {
				t.Fatalf("reading %s: %v", key, err)
			}
			rows, err := parquet.Read[analytics.Row](bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("decoding %s: %v", key, err)
			}
			files[strings.TrimPrefix(key, prefix)] = rows
		}
	}
	return files
}

// The S3 writer against a real S3-compatible server: rows land as objects under the prefix,
// partitioned and complete, and a re-delivered range replaces objects instead of duplicating rows.
func TestSinkS3(t *testing.T) {
	const bucket, prefix = "analytics", "rows"
	cl := startVersity(t, bucket)
	w, err := analytics.NewS3(cl, bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t)
	topic := broker.RedactedTopic("event")
	want := make(map[string]*schemas.Entry)
	var recs []*kgo.Record
	for i := range 30 {
		app := []string{"app-1", "app-2"}[i%2]
		r, e := entry(t, fmt.Sprintf("e-%02d", i), app, "event", hour0.Add(time.Duration(i%3)*time.Hour), i%4 == 0, 0)
		recs = append(recs, r)
		want[e.ID] = e
	}
	c.produce(recs...)
	cfg := analytics.Config{Brokers: c.addrs, Writer: w, Ledgers: []string{"event"}, MaxRows: 5, FlushInterval: time.Hour}

	// Six files (app × hour) of five rows each: the first to reach MaxRows flushes offsets 0-24,
	// stopping flushes 25-29. The boundaries depend on the records only, not on timing.
	run := startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 25)
	run.stopOK(t)
	if got := c.committed(analytics.DefaultGroup, topic, 0); got != 30 {
		t.Fatalf("committed after stop = %d, want 30", got)
	}
	files := readBucket(t, cl, bucket, prefix+"/")
	checkRows(t, files, want)
	before := names(files)
	if len(before) != 11 {
		t.Errorf("bucket holds %d objects, want 11 (6 files for 0-24, 5 for 25-29): %v", len(before), before)
	}

	// Rewinding to 0 reads the same records with the same batch boundaries: the same objects are
	// written again, and the bucket holds exactly what it held.
	c.rewind(analytics.DefaultGroup, topic, 0, 0)
	run = startSink(t, cfg)
	c.waitCommitted(t, topic, 0, 25)
	run.stopOK(t)
	if got := run.sink.Stats().Rows; got != 30 {
		t.Errorf("re-delivery wrote %d rows, want 30", got)
	}
	files = readBucket(t, cl, bucket, prefix+"/")
	checkRows(t, files, want)
	if after := names(files); !slices.Equal(after, before) {
		t.Errorf("objects after re-delivery = %v, want %v", after, before)
	}
	for name := range files {
		if !strings.HasPrefix(path.Base(name), "p0-o") {
			t.Errorf("object %s is not named by partition and offsets", name)
		}
	}
}

func TestS3ListAndRemove(t *testing.T) {
	ctx := t.Context()
	cl := startVersity(t, "list")
	w, err := analytics.NewS3(cl, "list", "/pre/")
	if err != nil {
		t.Fatal(err)
	}
	const dir = "app=a/ledger=event/date=2026-11-22/hour=10"
	if got, err := w.List(ctx, dir); err != nil || len(got) != 0 {
		t.Fatalf("List(empty) = %v, %v, want nothing, nil", got, err)
	}
	for _, n := range []string{dir + "/p0-o0-o9.parquet", dir + "/p1-o0-o9.parquet", dir + "/sub/p2-o0-o9.parquet", dir + "0/p3-o0-o9.parquet"} {
		if err := w.WriteFile(ctx, n, writeString(n)); err != nil {
			t.Fatalf("WriteFile(%s) = %v", n, err)
		}
	}
	checkListRemove(t, w, dir)
	obj, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("list"), Key: aws.String("pre/" + dir + "/p1-o0-o9.parquet")})
	if err != nil {
		t.Fatalf("object not under the prefix: %v", err)
	}
	obj.Body.Close()
	if err := w.WriteFile(ctx, "../x", writeString("x")); err == nil {
		t.Fatal("WriteFile(../x) = nil, want ErrInvalidName")
	}
}
