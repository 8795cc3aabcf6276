package blob

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/veil-project/veil/internal/leakcheck"
	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/sinks/store"
)

// testObjects is the behaviour every backend shares.
func testObjects(t *testing.T, o Objects) {
	ctx := t.Context()
	list := func(prefix string) []string {
		t.Helper()
		var keys []string
		if err := o.List(ctx, prefix, func(k string) error { keys = append(keys, k); return nil }); err != nil {
			t.Fatalf("List(%q) = %v", prefix, err)
		}
		sort.Strings(keys)
		return keys
	}
	t.Run("put get delete", func(t *testing.T) {
		if err := o.Put(ctx, "app-1/a", strings.NewReader("alpha")); err != nil {
			t.Fatalf("Put = %v", err)
		}
		if err := o.Put(ctx, "app-1/a", strings.NewReader("alpha2")); err != nil {
			t.Fatalf("Put again = %v", err)
		}
		r, err := o.Get(ctx, "app-1/a")
		if err != nil {
			t.Fatalf("Get = %v", err)
		}
		if got := mustRead(t, r); string(got) != "alpha2" {
			t.Errorf("Get = %q, want \"alpha2\"", got)
		}
		r.Close()
		if err := o.Delete(ctx, "app-1/a"); err != nil {
			t.Fatalf("Delete = %v", err)
		}
		if _, err := o.Get(ctx, "app-1/a"); !errors.Is(err, ErrObjectNotFound) {
			t.Errorf("Get after Delete = %v, want ErrObjectNotFound", err)
		}
		if err := o.Delete(ctx, "app-1/a"); err != nil {
			t.Errorf("Delete of a missing object = %v, want nil", err)
		}
		if _, err := o.Get(ctx, "app-9/never"); !errors.Is(err, ErrObjectNotFound) {
			t.Errorf("Get(never written) = %v, want ErrObjectNotFound", err)
		}
	})
	t.Run("empty object", func(t *testing.T) {
		if err := o.Put(ctx, "app-1/empty", bytes.NewReader(nil)); err != nil {
			t.Fatalf("Put(empty) = %v", err)
		}
		r, err := o.Get(ctx, "app-1/empty")
		if err != nil {
			t.Fatalf("Get(empty) = %v", err)
		}
		if got := mustRead(t, r); len(got) != 0 {
			t.Errorf("Get(empty) = %d bytes, want 0", len(got))
		}
		r.Close()
		_ = o.Delete(ctx, "app-1/empty")
	})
	t.Run("list", func(t *testing.T) {
		for _, k := range []string{"app-2/x", "app-2/y", "app-3/z", "app-22/w"} {
			if err := o.Put(ctx, k, strings.NewReader(k)); err != nil {
				t.Fatalf("Put(%s) = %v", k, err)
			}
		}
		if got, want := list("app-2/"), []string{"app-2/x", "app-2/y"}; !slices.Equal(got, want) {
			t.Errorf("List(app-2/) = %q, want %q", got, want)
		}
		all := list("")
		for _, k := range []string{"app-2/x", "app-2/y", "app-3/z", "app-22/w"} {
			if !slices.Contains(all, k) {
				t.Errorf("List(\"\") = %q, missing %s", all, k)
			}
		}
		for _, k := range all {
			_ = o.Delete(ctx, k)
		}
		if got := list(""); len(got) != 0 {
			t.Errorf("List after deleting all = %q, want none", got)
		}
	})
	t.Run("failed put leaves nothing", func(t *testing.T) {
		boom := errors.New("source failed")
		err := o.Put(ctx, "app-1/failed", io.MultiReader(strings.NewReader("partial"), errReader{boom}))
		if !errors.Is(err, boom) {
			t.Errorf("Put(failing reader) = %v, want it to wrap the read error", err)
		}
		if _, err := o.Get(ctx, "app-1/failed"); !errors.Is(err, ErrObjectNotFound) {
			t.Errorf("Get after failed Put = %v, want ErrObjectNotFound", err)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		for _, k := range []string{"", "/abs", "app/../x", "app/./x", "app//x", "app/x/", "..", `app\x`} {
			if err := o.Put(ctx, k, strings.NewReader("x")); !errors.Is(err, ErrBadKey) {
				t.Errorf("Put(%q) = %v, want ErrBadKey", k, err)
			}
			if _, err := o.Get(ctx, k); !errors.Is(err, ErrBadKey) {
				t.Errorf("Get(%q) = %v, want ErrBadKey", k, err)
			}
		}
	})
}

func TestDir(t *testing.T) {
	d, err := NewDir(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	testObjects(t, d)
	if _, err := d.PresignGet(t.Context(), "app/x", time.Minute); !errors.Is(err, ErrPresignUnsupported) {
		t.Errorf("Dir.PresignGet = %v, want ErrPresignUnsupported", err)
	}
}

// s3env is a versitygw server and a client for it.
type s3env struct {
	srv    *testsvc.S3Server
	client *s3.Client
}

func newS3(t *testing.T) *s3env {
	t.Helper()
	srv := testsvc.VersityGW(t)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	c, err := NewS3Client(t.Context(), S3ClientConfig{
		Region: srv.Region, Endpoint: srv.Endpoint, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatalf("NewS3Client = %v", err)
	}
	return &s3env{srv: srv, client: c}
}

func (e *s3env) bucket(t *testing.T, name string) {
	t.Helper()
	if _, err := e.client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("CreateBucket(%s) = %v", name, err)
	}
}

func (e *s3env) objects(t *testing.T, cfg S3Config) *S3 {
	t.Helper()
	cfg.Client = e.client
	if cfg.PartSize == 0 {
		cfg.PartSize = minPartSize
	}
	o, err := NewS3(cfg)
	if err != nil {
		t.Fatalf("NewS3 = %v", err)
	}
	return o
}

func TestS3(t *testing.T) {
	e := newS3(t)
	e.bucket(t, "veil-blobs")

	t.Run("bucket with prefixes", func(t *testing.T) {
		testObjects(t, e.objects(t, S3Config{Bucket: "veil-blobs", Prefix: "media/"}))
	})
	t.Run("bucket per app", func(t *testing.T) {
		o := e.objects(t, S3Config{BucketPerApp: true, BucketPrefix: "veil-", CreateBuckets: true})
		testObjects(t, o)
		// Each app got its own bucket.
		out, err := e.client.ListBuckets(t.Context(), &s3.ListBucketsInput{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range out.Buckets {
			names = append(names, aws.ToString(b.Name))
		}
		for _, app := range []string{"app-1", "app-2", "app-3", "app-22"} {
			if !slices.Contains(names, "veil-"+app) {
				t.Errorf("buckets = %q, missing veil-%s", names, app)
			}
		}
	})
	t.Run("bucket names", func(t *testing.T) {
		o := e.objects(t, S3Config{BucketPerApp: true, BucketPrefix: "veil-"})
		seen := map[string]string{}
		for _, app := range []string{"app-1", "App_1", "app.1", "APP-1", "a", strings.Repeat("x", 64), "-x-", "Z"} {
			name := o.BucketName(app)
			if len(name) < 3 || len(name) > 63 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
				strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") {
				t.Errorf("BucketName(%q) = %q, not a valid bucket name", app, name)
			}
			if prev, ok := seen[name]; ok {
				t.Errorf("BucketName(%q) = BucketName(%q) = %q", app, prev, name)
			}
			seen[name] = app
		}
	})
	t.Run("multipart", func(t *testing.T) {
		o := e.objects(t, S3Config{Bucket: "veil-blobs"})
		const size = 2*minPartSize + 12345 // three parts, the last one short
		if err := o.Put(t.Context(), "app-1/big", seeded(5, size)); err != nil {
			t.Fatalf("Put(multipart) = %v", err)
		}
		r, err := o.Get(t.Context(), "app-1/big")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		h1, h2 := sha256.New(), sha256.New()
		n, _ := io.Copy(h1, r)
		_, _ = io.Copy(h2, seeded(5, size))
		if n != size || !bytes.Equal(h1.Sum(nil), h2.Sum(nil)) {
			t.Errorf("Get(multipart) = %d bytes (sha %x), want %d bytes (sha %x)", n, h1.Sum(nil), size, h2.Sum(nil))
		}
		// No upload left open.
		ups, err := e.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String("veil-blobs")})
		if err != nil || len(ups.Uploads) != 0 {
			t.Errorf("ListMultipartUploads = %d uploads, %v; want 0, nil", len(ups.Uploads), err)
		}
	})
	t.Run("failed multipart aborted", func(t *testing.T) {
		o := e.objects(t, S3Config{Bucket: "veil-blobs"})
		boom := errors.New("source failed")
		err := o.Put(t.Context(), "app-1/broken", io.MultiReader(seeded(6, minPartSize+10), errReader{boom}))
		if !errors.Is(err, boom) {
			t.Fatalf("Put(failing multipart) = %v, want the read error", err)
		}
		ups, err := e.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String("veil-blobs")})
		if err != nil || len(ups.Uploads) != 0 {
			t.Errorf("ListMultipartUploads after failure = %d uploads, %v; want 0, nil", len(ups.Uploads), err)
		}
	})
	t.Run("presigned", func(t *testing.T) {
		o := e.objects(t, S3Config{Bucket: "veil-blobs"})
		if err := o.Put(t.Context(), "app-1/p", strings.NewReader("ciphertext")); err != nil {
			t.Fatal(err)
		}
		url, err := o.PresignGet(t.Context(), "app-1/p", time.Minute)
		if err != nil {
			t.Fatalf("PresignGet = %v", err)
		}
		code, body := httpGet(t, url)
		if code != http.StatusOK || string(body) != "ciphertext" {
			t.Errorf("GET presigned = %d %q, want 200 \"ciphertext\"", code, body)
		}
		if code, _ := httpGet(t, strings.Replace(url, "app-1/p", "app-1/q", 1)); code != http.StatusForbidden {
			t.Errorf("GET presigned URL edited to another key = %d, want 403", code)
		}
		short, err := o.PresignGet(t.Context(), "app-1/p", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		if code, _ := httpGet(t, short); code == http.StatusOK {
			t.Errorf("GET expired presigned URL = 200, want it refused")
		}
	})
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET = %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestServiceS3(t *testing.T) {
	e3 := newS3(t)
	e3.bucket(t, "veil-blobs")
	e3.bucket(t, "veil-staging")
	o := e3.objects(t, S3Config{Bucket: "veil-blobs", Prefix: "media/"})
	e := newEnv(t, o, func(c *Config) {
		c.ChunkSize = 0
		c.StagingS3 = o
		c.StagingBuckets = []string{"veil-staging"}
	})

	t.Run("round trip and link", func(t *testing.T) {
		in := media(300 << 10)
		tok, _ := e.seal("app-42", 24*time.Hour, bytes.NewReader(in))
		if got, st, err := e.open(tok); st != StatusOK || err != nil || !bytes.Equal(got, in) {
			t.Fatalf("Open = %d bytes, %v, %v; want the media", len(got), st, err)
		}
		link, _, err := e.svc.Link(tok, 0)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.svc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, link, nil))
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), in) {
			t.Errorf("GET link = %d, %d bytes; want 200 and the media", rec.Code, rec.Body.Len())
		}
	})
	t.Run("staged in s3", func(t *testing.T) {
		if _, err := e3.client.PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String("veil-staging"), Key: aws.String("app-42/up/photo.jpg"), Body: bytes.NewReader(media(7000)),
		}); err != nil {
			t.Fatal(err)
		}
		tok, _, n, err := e.svc.SealStaged(t.Context(), "app-42", "blob", newRef(), e.clock.Now().Add(24*time.Hour), "s3://veil-staging/app-42/up/photo.jpg")
		if err != nil || n != 7000 {
			t.Fatalf("SealStaged = %d, %v; want 7000, nil", n, err)
		}
		e.checkOpens(t, "staged", tok.Encode(), media(7000))
		if _, err := o.OpenStaged(t.Context(), "veil-staging", "app-42/up/photo.jpg"); !errors.Is(err, ErrObjectNotFound) {
			t.Errorf("staging object after seal: Get = %v, want ErrObjectNotFound", err)
		}
		if _, err := e.svc.OpenStaging(t.Context(), "app-42", "s3://veil-blobs/app-42/x"); !errors.Is(err, ErrStagingRefused) {
			t.Errorf("OpenStaging(bucket not allowed) = %v, want ErrStagingRefused", err)
		}
		// Another tenant's staged object: refused by every spelling, and left in place.
		if _, err := e3.client.PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String("veil-staging"), Key: aws.String("app-7/theirs.jpg"), Body: bytes.NewReader([]byte("app-7's media")),
		}); err != nil {
			t.Fatal(err)
		}
		for _, ref := range []string{
			"s3://veil-staging/app-7/theirs.jpg",
			"s3://veil-staging/app-42/../app-7/theirs.jpg",
			"s3://veil-staging/app-42/%2e%2e/app-7/theirs.jpg",
			"s3://veil-staging/app-42/%2E%2e/app-7/theirs.jpg",
			"s3://veil-staging/app-42%2f..%2fapp-7/theirs.jpg",
			"s3://veil-staging/app-42//../app-7/theirs.jpg",
			"s3://veil-staging/app-42/./../app-7/theirs.jpg",
			`s3://veil-staging/app-42/..\app-7\theirs.jpg`,
			"s3://veil-staging/APP-7/theirs.jpg",
			"s3://veil-staging//app-7/theirs.jpg",
			"s3://veil-staging/app-42",
			"s3://veil-staging/app-42/",
		} {
			if r, err := e.svc.OpenStaging(t.Context(), "app-42", ref); !errors.Is(err, ErrStagingRefused) {
				if err == nil {
					r.Close()
				}
				t.Errorf("OpenStaging(app-42, %q) = %v, want ErrStagingRefused", ref, err)
			}
			if err := e.svc.DeleteStaging(t.Context(), "app-42", ref); !errors.Is(err, ErrStagingRefused) {
				t.Errorf("DeleteStaging(app-42, %q) = %v, want ErrStagingRefused", ref, err)
			}
		}
		if r, err := o.OpenStaged(t.Context(), "veil-staging", "app-7/theirs.jpg"); err != nil {
			t.Errorf("app-7's staged object after app-42's references: %v, want still there", err)
		} else {
			r.Close()
		}
	})
	t.Run("sweep and delete app", func(t *testing.T) {
		short, _ := e.seal("app-s", time.Hour, bytes.NewReader([]byte("short")))
		long, _ := e.seal("app-s", 24*time.Hour, bytes.NewReader([]byte("long")))
		other, _ := e.seal("app-t", 24*time.Hour, bytes.NewReader([]byte("other")))
		e.clock.Advance(time.Hour)
		n, err := e.svc.Sweep(t.Context())
		if err != nil || n != 1 {
			t.Fatalf("Sweep = %d, %v; want 1, nil", n, err)
		}
		e.checkExpired(t, "swept", short)
		e.checkOpens(t, "live", long, []byte("long"))
		if n, err := e.svc.DeleteApp(t.Context(), "app-s"); n != 1 || err != nil {
			t.Errorf("DeleteApp(app-s) = %d, %v; want 1, nil", n, err)
		}
		e.checkExpired(t, "after DeleteApp", long)
		e.checkOpens(t, "other app", other, []byte("other"))
	})
	t.Run("200 MiB in bounded memory", func(t *testing.T) {
		if testing.Short() {
			t.Skip("200 MiB through versitygw; skipped with -short")
		}
		const size = 200 << 20
		const budget = 32 << 20
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		stop := make(chan struct{})
		peak := heapPeak(stop)
		inHash := sha256.New()
		ref := newRef()
		start := time.Now()
		tok, item, n, err := e.svc.Seal(t.Context(), "app-big", "blob", ref, e.clock.Now().Add(24*time.Hour), io.TeeReader(seeded(77, size), inHash))
		if err != nil || n != size {
			close(stop)
			t.Fatalf("Seal(200 MiB) = %d, %v", n, err)
		}
		sealed := time.Since(start)
		if err := e.store.Put(t.Context(), []store.Item{item}); err != nil {
			close(stop)
			t.Fatal(err)
		}
		m, st, err := e.svc.Open(t.Context(), tok.Encode())
		if err != nil || st != StatusOK {
			close(stop)
			t.Fatalf("Open = %v, %v", st, err)
		}
		outHash := sha256.New()
		got, err := io.Copy(outHash, m)
		m.Close()
		close(stop)
		if err != nil || got != size {
			t.Fatalf("reading 200 MiB = %d, %v", got, err)
		}
		if !bytes.Equal(inHash.Sum(nil), outHash.Sum(nil)) {
			t.Fatal("sha256 of the opened blob differs from the input")
		}
		p := <-peak
		if p > base.HeapInuse+budget {
			t.Errorf("peak HeapInuse = %d MiB above start, want < %d MiB", (p-base.HeapInuse)>>20, budget>>20)
		}
		t.Logf("200 MiB via versitygw: seal %v, total %v, peak HeapInuse %.1f MiB (start %.1f MiB)",
			sealed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), float64(p)/(1<<20), float64(base.HeapInuse)/(1<<20))
	})
}

// TestS3ClientConfigRedacts: every way an S3ClientConfig prints or logs shows the region, endpoint
// and access key id, and never the secret access key or the session token.
func TestS3ClientConfigRedacts(t *testing.T) {
	c := S3ClientConfig{Region: "eu-west-1", Endpoint: "http://s3:9000", PathStyle: true, AccessKeyID: "AKIDS3", SecretAccessKey: "s3-secret-never-printed", SessionToken: "s3-t0ken-never-printed"}
	leakcheck.Printed(t, c, []string{c.SecretAccessKey, c.SessionToken}, "eu-west-1", "http://s3:9000", "AKIDS3")
	if got, want := c.String(), "s3{region=eu-west-1 key=AKIDS3 secret=[redacted] session_token=[redacted] endpoint=http://s3:9000 path_style=true}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
