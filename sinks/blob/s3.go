package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/veil-project/veil/internal/awsload"
)

// S3ClientConfig selects the S3 endpoint and credentials. Zero values fall back to the SDK's
// default chain (environment, shared config, instance role).
type S3ClientConfig struct {
	Region   string // default from the environment or shared config, else an error
	Endpoint string // base endpoint override for S3-compatible servers; default AWS
	// PathStyle addresses buckets as http://endpoint/bucket/key instead of
	// http://bucket.endpoint/key; most S3-compatible servers need it.
	PathStyle bool

	// Static credentials, used when AccessKeyID is set; otherwise the default chain.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// settings are what awsload takes of cfg; they also print and log cfg without its secrets.
func (cfg S3ClientConfig) settings() awsload.Settings {
	return awsload.Settings{Region: cfg.Region, AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, SessionToken: cfg.SessionToken}
}

// String describes cfg without the secret access key and the session token.
func (cfg S3ClientConfig) String() string {
	return fmt.Sprintf("s3{%s endpoint=%s path_style=%t}", cfg.settings(), cfg.Endpoint, cfg.PathStyle)
}

// GoString is String, so %#v does not print the secrets either.
func (cfg S3ClientConfig) GoString() string { return cfg.String() }

// LogValue logs cfg without the secret access key and the session token.
func (cfg S3ClientConfig) LogValue() slog.Value {
	return slog.GroupValue(append(cfg.settings().LogValue().Group(), slog.String("endpoint", cfg.Endpoint), slog.Bool("path_style", cfg.PathStyle))...)
}

// NewS3Client returns an S3 client for cfg. It does not contact S3. Checksums are computed only
// where S3 requires them: objects are AEAD ciphertext, authenticated end to end already, and
// several S3-compatible servers do not support the newer checksum headers.
func NewS3Client(ctx context.Context, cfg S3ClientConfig) (*s3.Client, error) {
	awsCfg, err := awsload.Load(ctx, cfg.settings(),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	}), nil
}

// S3Config places objects in S3.
type S3Config struct {
	Client *s3.Client // required

	// Bucket holds every app's objects, each app under its own key prefix ("<Prefix><app>/…").
	// Used unless BucketPerApp is set.
	Bucket string
	// BucketPerApp gives every app its own bucket, named by BucketName (BucketPrefix and the app
	// id made a valid bucket name). Objects keep the app in their key as well.
	BucketPerApp bool
	BucketPrefix string
	// Prefix is prepended to every object key, e.g. "blobs/". Default none.
	Prefix string
	// CreateBuckets creates a missing bucket before the first write to it. Default off: buckets
	// are provisioned with their policies by operators.
	CreateBuckets bool
	// PartSize is the multipart part size; objects smaller than one part are sent in one PUT.
	// It is also the only buffer Put holds. Default 8 MiB; at least 5 MiB (the S3 minimum).
	PartSize int
}

const (
	defaultPartSize = 8 << 20
	minPartSize     = 5 << 20
	maxParts        = 10000
)

// S3 is the S3 backend.
type S3 struct {
	c       *s3.Client
	presign *s3.PresignClient
	cfg     S3Config
	known   sync.Map // bucket name → struct{}: exists (or was created)
	bufs    sync.Pool
}

// NewS3 returns the S3 backend for cfg. It does not contact S3.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Client == nil {
		return nil, errors.New("configuring S3 blob store: no client")
	}
	if !cfg.BucketPerApp && cfg.Bucket == "" {
		return nil, errors.New("configuring S3 blob store: no bucket")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = defaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("configuring S3 blob store: part size below %d bytes", minPartSize)
	}
	b := &S3{c: cfg.Client, presign: s3.NewPresignClient(cfg.Client), cfg: cfg}
	b.bufs.New = func() any { return make([]byte, cfg.PartSize) }
	return b, nil
}

// BucketName returns the bucket of app in bucket-per-app mode: BucketPrefix followed by the app
// id when that is already a valid bucket name, otherwise by a lowercased form and a hash of the
// id (app ids may hold capitals and underscores, bucket names may not).
func (b *S3) BucketName(app string) string {
	name := b.cfg.BucketPrefix + app
	ok := len(name) >= 3 && len(name) <= 63
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' && i > 0 && i < len(name)-1
	}
	if ok {
		return name
	}
	sum := sha256.Sum256([]byte(app))
	suffix := "-" + hex.EncodeToString(sum[:6])
	var sb strings.Builder
	for _, c := range []byte(strings.ToLower(b.cfg.BucketPrefix + app)) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('-')
		}
	}
	base := strings.Trim(sb.String(), "-")
	if base == "" {
		base = "veil"
	}
	if len(base) > 63-len(suffix) {
		base = strings.TrimRight(base[:63-len(suffix)], "-")
	}
	return base + suffix
}

// loc maps an object key to its bucket and S3 key.
func (b *S3) loc(key string) (string, string, error) {
	if err := checkKey(key); err != nil {
		return "", "", err
	}
	if b.cfg.BucketPerApp {
		return b.BucketName(keyApp(key)), b.cfg.Prefix + key, nil
	}
	return b.cfg.Bucket, b.cfg.Prefix + key, nil
}

func (b *S3) ensure(ctx context.Context, bucket string) error {
	if !b.cfg.CreateBuckets {
		return nil
	}
	if _, ok := b.known.Load(bucket); ok {
		return nil
	}
	_, err := b.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err != nil {
		if !isNotFound(err) {
			return fmt.Errorf("checking bucket: %w", err)
		}
		_, err = b.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) && apiCode(err) != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("creating bucket: %w", err)
		}
	}
	b.known.Store(bucket, struct{}{})
	return nil
}

// Put sends r in one PUT if it fits in one part, otherwise as a multipart upload of parts read
// one at a time into one reused buffer; a failed multipart upload is aborted.
func (b *S3) Put(ctx context.Context, key string, r io.Reader) error {
	bucket, okey, err := b.loc(key)
	if err != nil {
		return err
	}
	if err := b.ensure(ctx, bucket); err != nil {
		return err
	}
	buf := b.bufs.Get().([]byte)
	defer b.bufs.Put(buf)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		_, err = b.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(bucket),
			Key:           aws.String(okey),
			Body:          bytes.NewReader(buf[:n]),
			ContentLength: aws.Int64(int64(n)),
			ContentType:   aws.String("application/octet-stream"),
		})
		if err != nil {
			return fmt.Errorf("putting object: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading object body: %w", err)
	}
	up, err := b.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String(okey),
		ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("starting multipart upload: %w", err)
	}
	abort := func(cause error) error {
		// The upload's parts cost storage until aborted: abort even if ctx was cancelled.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = b.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(bucket), Key: aws.String(okey), UploadId: up.UploadId,
		})
		return cause
	}
	var parts []types.CompletedPart
	for num := int32(1); ; num++ {
		if num > maxParts {
			return abort(errors.New("putting object: more than 10000 parts"))
		}
		out, err := b.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        aws.String(bucket),
			Key:           aws.String(okey),
			UploadId:      up.UploadId,
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(buf[:n]),
			ContentLength: aws.Int64(int64(n)),
		})
		if err != nil {
			return abort(fmt.Errorf("uploading part %d: %w", num, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		n, err = io.ReadFull(r, buf)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return abort(fmt.Errorf("reading object body: %w", err))
		}
	}
	_, err = b.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(bucket),
		Key:             aws.String(okey),
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(fmt.Errorf("completing multipart upload: %w", err))
	}
	return nil
}

// Get opens the object.
func (b *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	bucket, okey, err := b.loc(key)
	if err != nil {
		return nil, err
	}
	return b.getFrom(ctx, bucket, okey)
}

func (b *S3) getFrom(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	out, err := b.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if isNotFound(err) {
		return nil, ErrObjectNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("getting object: %w", err)
	}
	return out.Body, nil
}

// Delete removes the object.
func (b *S3) Delete(ctx context.Context, key string) error {
	bucket, okey, err := b.loc(key)
	if err != nil {
		return err
	}
	return b.deleteFrom(ctx, bucket, okey)
}

func (b *S3) deleteFrom(ctx context.Context, bucket, key string) error {
	_, err := b.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting object: %w", err)
	}
	return nil
}

// List lists the objects under prefix. In bucket-per-app mode a prefix without an app segment
// lists every bucket whose name starts with BucketPrefix.
func (b *S3) List(ctx context.Context, prefix string, fn func(key string) error) error {
	if !b.cfg.BucketPerApp {
		return b.listBucket(ctx, b.cfg.Bucket, prefix, fn)
	}
	if app, _, ok := strings.Cut(prefix, "/"); ok {
		return b.listBucket(ctx, b.BucketName(app), prefix, fn)
	}
	p := s3.NewListBucketsPaginator(b.c, &s3.ListBucketsInput{Prefix: aws.String(b.cfg.BucketPrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing buckets: %w", err)
		}
		for _, bk := range page.Buckets {
			name := aws.ToString(bk.Name)
			if !strings.HasPrefix(name, b.cfg.BucketPrefix) {
				continue
			}
			// Keys carry their app: only those that map back to this bucket belong here.
			err := b.listBucket(ctx, name, prefix, func(key string) error {
				if b.BucketName(keyApp(key)) != name {
					return nil
				}
				return fn(key)
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *S3) listBucket(ctx context.Context, bucket, prefix string, fn func(string) error) error {
	p := s3.NewListObjectsV2Paginator(b.c, &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket),
		Prefix: aws.String(b.cfg.Prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing objects: %w", err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), b.cfg.Prefix)
			if checkKey(key) != nil {
				continue
			}
			if err := fn(key); err != nil {
				return err
			}
		}
	}
	return nil
}

// PresignGet returns a SigV4 presigned GET URL valid for ttl.
func (b *S3) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	bucket, okey, err := b.loc(key)
	if err != nil {
		return "", err
	}
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(okey)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presigning object URL: %w", err)
	}
	return req.URL, nil
}

// OpenStaged opens s3://bucket/key staging objects (see Config.StagingS3).
func (b *S3) OpenStaged(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	return b.getFrom(ctx, bucket, key)
}

// DeleteStaged deletes a staging object.
func (b *S3) DeleteStaged(ctx context.Context, bucket, key string) error {
	return b.deleteFrom(ctx, bucket, key)
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsb *types.NoSuchBucket
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsb) {
		return true
	}
	switch apiCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchBucket":
		return true
	}
	return false
}
