package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/schemas"
	"github.com/veil-project/veil/sinks/blob"
)

const blobType = "meya.blob.entry"

var (
	pathContent = schemas.MustParsePath("data.content")
	pathObject  = schemas.MustParsePath("data.object")
)

// sealMedia moves the media of a sensitive blob entry into the blob store: inline content
// (base64 in data.content) or a staged object (data.object: <app_id>/path under the staging
// directory, or s3://bucket/<app_id>/key; a reference outside the entry's own app root is
// dead-lettered). Each is encrypted under its own DEK and replaced in the entry by the token
// of that DEK, which the normal sealing then leaves untouched. The staging copy is deleted only
// after the transaction commits, so an aborted batch can seal it again.
func (t *Transformer) sealMedia(ctx context.Context, e *schemas.Entry, ledger string, src Source, expiry time.Time, out *Output) error {
	var staged []string
	for _, p := range []schemas.Path{pathContent, pathObject} {
		v, ok := e.Get(p)
		if !ok {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			return &permanentError{reason: schemas.ReasonInvalidField, field: p.String()}
		}
		if envelope.IsToken(s) {
			continue
		}
		var media io.Reader
		if p.String() == pathContent.String() {
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return &permanentError{reason: schemas.ReasonInvalidField, field: p.String()}
			}
			media = bytes.NewReader(raw)
			defer clear(raw)
		} else {
			rc, err := t.Blobs.OpenStaging(ctx, e.AppID, s)
			if err != nil {
				if errors.Is(err, blob.ErrStagingRefused) || errors.Is(err, blob.ErrStagingNotFound) {
					return &permanentError{reason: schemas.ReasonInvalidField, field: p.String()}
				}
				return Transient(fmt.Errorf("opening staged media: %w", err))
			}
			defer rc.Close()
			media = rc
			staged = append(staged, s)
		}
		ref := refFor(ctx, e.AppID, e.ID+"#"+p.String(), src)
		tok, item, _, err := t.Blobs.Seal(ctx, e.AppID, ledger, ref, expiry, media)
		if errors.Is(err, envelope.ErrInvalidInput) || errors.Is(err, blob.ErrInvalidInput) {
			return &permanentError{reason: schemas.ReasonInvalidField, field: p.String()}
		}
		if err != nil {
			return Transient(fmt.Errorf("sealing media: %w", err))
		}
		e.Set(p, tok.Encode())
		out.Media = append(out.Media, item)
	}
	if len(staged) > 0 {
		blobs, log, app := t.Blobs, t.Logger, e.AppID
		out.AfterCommit = func(ctx context.Context) {
			for _, s := range staged {
				if err := blobs.DeleteStaging(ctx, app, s); err != nil && log != nil {
					log.Warn("deleting staged media after commit", "err", err)
				}
			}
		}
	}
	return nil
}
