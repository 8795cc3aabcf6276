package analytics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3API is the subset of *s3.Client the S3 writer uses.
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// S3 writes files as objects of one bucket under a key prefix. A completed PutObject is atomic
// and durable, so the whole file is encoded in memory first and sent in one request (a file holds
// at most MaxRows rows).
type S3 struct {
	client S3API
	bucket string
	prefix string
}

// NewS3 returns a writer to bucket; prefix ("" or a path such as "analytics") is put before every
// name.
func NewS3(client S3API, bucket, prefix string) (*S3, error) {
	if client == nil || bucket == "" {
		return nil, errors.New("analytics: S3 writer needs a client and a bucket")
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := checkName(prefix); err != nil {
			return nil, fmt.Errorf("analytics: S3 prefix: %w", err)
		}
		prefix += "/"
	}
	return &S3{client: client, bucket: bucket, prefix: prefix}, nil
}

// WriteFile implements Writer.
func (w *S3) WriteFile(ctx context.Context, name string, write func(io.Writer) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return fmt.Errorf("writing file: %w", err)
	}
	_, err := w.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(w.bucket),
		Key:           aws.String(w.prefix + name),
		Body:          bytes.NewReader(buf.Bytes()),
		ContentLength: aws.Int64(int64(buf.Len())),
		ContentType:   aws.String("application/vnd.apache.parquet"),
	})
	if err != nil {
		return fmt.Errorf("uploading object: %w", err)
	}
	return nil
}

// List implements Writer.
func (w *S3) List(ctx context.Context, dir string) ([]string, error) {
	if err := checkName(dir); err != nil {
		return nil, err
	}
	prefix := w.prefix + dir + "/"
	var names []string
	p := s3.NewListObjectsV2Paginator(w.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(w.bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing objects: %w", err)
		}
		for _, o := range out.Contents {
			if name := strings.TrimPrefix(aws.ToString(o.Key), prefix); name != "" && !strings.Contains(name, "/") {
				names = append(names, path.Base(name))
			}
		}
	}
	return names, nil
}

// Remove implements Writer. Deleting a missing object succeeds in S3.
func (w *S3) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := w.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.bucket), Key: aws.String(w.prefix + name)}); err != nil {
		return fmt.Errorf("deleting object: %w", err)
	}
	return nil
}
