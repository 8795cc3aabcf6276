package reveal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/sinks/blob"
)

// blobLinkPrefix is where signed media links are served (blob.Config.LinkPrefix default).
const blobLinkPrefix = "/v1/blobs/"

// StatusLinkIssued is the audit status of a signed media link handed to a principal.
const StatusLinkIssued Status = "link_issued"

type linkRequest struct {
	Token      string `json:"token"`
	TTLSeconds int    `json:"ttl_seconds,omitempty"` // default 15 min, at most 60 min
}

type linkResponse struct {
	URL     string    `json:"url"` // a path on this server
	Expires time.Time `json:"expires"`
}

// link answers POST /v1/blobs/link: a principal that may decrypt the token's app gets a signed
// link that streams the decrypted media until it expires. Issuing is audited; so is each fetch
// (see LinkAudit).
func (s *Server) link(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Blobs == nil {
		writeError(w, http.StatusNotFound, "no blob store configured")
		return
	}
	p, reqID, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	var req linkRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeError(w, http.StatusBadRequest, `body must be {"token": "veil:v1:…", "ttl_seconds": N}`)
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl < 0 || ttl > blob.MaxLinkTTL {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl_seconds must be between 1 and %d", int(blob.MaxLinkTTL.Seconds())))
		return
	}
	rec := AuditRecord{Time: s.cfg.Now().UTC(), RequestID: reqID, Source: "api:link", Principal: p.Name, Kind: p.Kind}
	tok, err := envelope.ParseToken(req.Token)
	if err != nil {
		rec.Field, rec.Status = -1, string(StatusInvalid)
		s.auditOrFail(w, r.Context(), rec)
		writeError(w, http.StatusBadRequest, "not a token")
		return
	}
	rec.App, rec.Ref, rec.Field = tok.App, tok.Ref.String(), int(tok.Field)
	if !p.MayDecrypt(tok.App) {
		rec.Status = string(StatusDenied)
		s.auditOrFail(w, r.Context(), rec)
		writeError(w, http.StatusForbidden, "denied")
		return
	}
	url, exp, err := s.cfg.Blobs.Link(req.Token, ttl)
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot make a link for this token")
		return
	}
	rec.Status = string(StatusLinkIssued)
	if !s.auditOrFail(w, r.Context(), rec) {
		return
	}
	out, _ := json.Marshal(linkResponse{URL: url, Expires: exp.UTC()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(out, '\n'))
}

// auditOrFail writes rec; on failure it answers 503 and reports false.
func (s *Server) auditOrFail(w http.ResponseWriter, ctx context.Context, rec AuditRecord) bool {
	actx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.cfg.Auditor.Audit(actx, []AuditRecord{rec}); err != nil {
		s.log.Warn("audit failed", "request_id", rec.RequestID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "audit unavailable; retry")
		return false
	}
	return true
}

// LinkAudit returns the blob.Config.Audit hook that records every fetch of a signed link
// (principal "signed-link": the link is the credential) before any byte is streamed.
func LinkAudit(a Auditor, now func() time.Time) func(context.Context, envelope.Token, blob.Status) error {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, tok envelope.Token, st blob.Status) error {
		rec := NewAuditRecord(&tok, Status(st))
		rec.Time, rec.RequestID, rec.Source, rec.Principal = now().UTC(), newRequestID(), "signed-link", "signed-link"
		if err := a.Audit(ctx, []AuditRecord{rec}); err != nil {
			return errors.Join(errors.New("auditing link fetch"), err)
		}
		return nil
	}
}
