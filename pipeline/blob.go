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

// The media members of a blob entry, in the order they are moved.
var mediaPaths = [...]string{"data.content", "data.object"}

// sealMedia moves the media of a sensitive blob entry into the blob store: inline content
// (base64 in data.content) or a staged object (data.object: <app_id>/path under the staging
// directory, or s3://bucket/<app_id>/key; a reference outside the entry's own app root is
// dead-lettered). Each is encrypted under its own DEK and replaced in the entry (w.media) by the
// token of that DEK, which the normal sealing then leaves untouched. The staging copy is deleted
// only after the transaction commits, so an aborted batch can seal it again.
func (t *Transformer) sealMedia(ctx context.Context, w *work, value []byte, ledger string, src Source, expiry time.Time, out *Output) error {
	sc := &w.scan
	e := &sc.Entry
	var staged []string
	for _, p := range mediaPaths {
		i, ok := sc.Find(p)
		if !ok {
			continue
		}
		n := sc.Node(i)
		if n.Kind != '"' {
			return &permanentError{reason: schemas.ReasonInvalidField, field: p}
		}
		s, ok := stringAt(value, schemas.Span{Start: n.Start, End: n.End})
		if !ok {
			return &permanentError{reason: schemas.ReasonInvalidField, field: p}
		}
		if envelope.IsToken(s) {
			continue
		}
		var media io.Reader
		if p == mediaPaths[0] {
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return &permanentError{reason: schemas.ReasonInvalidField, field: p}
			}
			media = bytes.NewReader(raw)
			defer clear(raw)
		} else {
			rc, err := t.Blobs.OpenStaging(ctx, e.AppID, s)
			if err != nil {
				if errors.Is(err, blob.ErrStagingRefused) || errors.Is(err, blob.ErrStagingNotFound) {
					return &permanentError{reason: schemas.ReasonInvalidField, field: p}
				}
				return Transient(fmt.Errorf("opening staged media: %w", err))
			}
			defer rc.Close()
			media = rc
			staged = append(staged, s)
		}
		ref := refFor(ctx, e.AppID, e.ID+"#"+p, src)
		tok, item, _, err := t.Blobs.Seal(ctx, e.AppID, ledger, ref, expiry, media)
		if errors.Is(err, envelope.ErrInvalidInput) || errors.Is(err, blob.ErrInvalidInput) {
			return &permanentError{reason: schemas.ReasonInvalidField, field: p}
		}
		if err != nil {
			return Transient(fmt.Errorf("sealing media: %w", err))
		}
		w.media = append(w.media, mediaToken{node: i, tok: tok.Encode()})
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
