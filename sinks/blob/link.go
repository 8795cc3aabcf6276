package blob

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/aesgcm"
)

// Signed links. A link is
//
//	<LinkPrefix><expiry unix s>/<base64url(nonce [12] | AES-256-GCM(linkKey, nonce, token, aad))>
//	aad = "veil blob link v1" | expiry u64
//
// The token must travel inside the link: the service holds no key that opens a record alone
// (the ref KEK exists only in tokens). It is encrypted, not merely signed, so a leaked link
// exposes nothing beyond its own short life, while the token it carries stays valid until the
// blob's TTL. The GCM tag authenticates the token and the expiry under a key only the service
// holds (an AEAD is a MAC over its associated data and ciphertext), so an edited expiry or
// token is refused as tampered.
const (
	// DefaultLinkTTL is the life of a link when none is asked for.
	DefaultLinkTTL = 15 * time.Minute
	// MaxLinkTTL is the longest life a link may have.
	MaxLinkTTL = 60 * time.Minute

	linkInfo = "veil blob link v1"
	// maxLinkLen bounds what the handler decodes: a token of the longest app id, sealed.
	maxLinkLen = 512
)

// ErrLinkTTL is returned by Link for a life above MaxLinkTTL or below zero.
var ErrLinkTTL = errors.New("blob: link life out of range")

var linkEncoding = base64.RawURLEncoding.Strict()

type linkSealer struct {
	aead cipher.AEAD
}

func newLinkSealer(secret []byte) (*linkSealer, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, secret); err != nil {
			return nil, fmt.Errorf("drawing link secret: %w", err)
		}
		defer clear(secret)
	} else if len(secret) < 32 {
		return nil, fmt.Errorf("configuring blob service: %w: link secret shorter than 32 bytes", ErrInvalidInput)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, linkInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving link key: %w", err)
	}
	defer clear(key)
	aead, err := aesgcm.New(key)
	if err != nil {
		return nil, fmt.Errorf("creating link cipher: %w", err)
	}
	return &linkSealer{aead: aead}, nil
}

func linkAAD(exp int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(linkInfo), uint64(exp))
}

// Link returns a URL path (LinkPrefix…) that streams the decrypted blob of token until expires:
// ttl from now, DefaultLinkTTL when ttl is 0, ErrLinkTTL above MaxLinkTTL. The link never
// outlives the blob: past the blob's TTL it answers 410 Gone like an expired link. The token is
// checked for form only; whether it opens a blob is decided when the link is used.
func (s *Service) Link(token string, ttl time.Duration) (string, time.Time, error) {
	if ttl == 0 {
		ttl = DefaultLinkTTL
	}
	if ttl < 0 || ttl > MaxLinkTTL {
		return "", time.Time{}, ErrLinkTTL
	}
	if _, err := envelope.ParseToken(token); err != nil {
		return "", time.Time{}, fmt.Errorf("making link: %w", err)
	}
	// Whole seconds, rounded down: a link never lives longer than asked.
	exp := s.now().Add(ttl).Unix()
	nonce := make([]byte, 12, 12+len(token)+16)
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return "", time.Time{}, fmt.Errorf("making link: %w", err)
	}
	sealed := s.links.aead.Seal(nonce, nonce, []byte(token), linkAAD(exp))
	url := s.cfg.LinkPrefix + strconv.FormatInt(exp, 10) + "/" + linkEncoding.EncodeToString(sealed)
	return url, time.Unix(exp, 0), nil
}

// openLink verifies a link's last two path segments and returns its token and expiry.
func (s *Service) openLink(path string) (string, time.Time, bool) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", time.Time{}, false
	}
	enc := path[i+1:]
	j := strings.LastIndexByte(path[:i], '/')
	expStr := path[j+1 : i]
	if len(enc) > maxLinkLen || len(expStr) > 19 {
		return "", time.Time{}, false
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || exp < 0 || strconv.FormatInt(exp, 10) != expStr {
		return "", time.Time{}, false
	}
	sealed, err := linkEncoding.DecodeString(enc)
	if err != nil || len(sealed) < 12+16 {
		return "", time.Time{}, false
	}
	tok, err := s.links.aead.Open(nil, sealed[:12], sealed[12:], linkAAD(exp))
	if err != nil {
		return "", time.Time{}, false
	}
	return string(tok), time.Unix(exp, 0), true
}

// Handler serves links made by Link, wherever it is mounted (it reads the last two segments of
// the request path): a tampered or malformed link answers 403 Forbidden, an expired link or a
// blob past its TTL, erased or swept 410 Gone, a transient failure 503; otherwise the decrypted
// medium is streamed with its length. If the stream fails to authenticate midway, the response
// is aborted, so a client never takes a cut-off body for a complete one.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(s.serveLink)
}

func (s *Service) serveLink(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, exp, ok := s.openLink(r.URL.Path)
	if !ok {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if !s.now().Before(exp) {
		http.Error(w, "link expired", http.StatusGone)
		return
	}
	m, st, err := s.Open(r.Context(), token)
	if err != nil {
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if s.cfg.Audit != nil {
		tok, _ := envelope.ParseToken(token) // Link checked its form
		if err := s.cfg.Audit(r.Context(), tok, st); err != nil {
			if m != nil {
				m.Close()
			}
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	switch st {
	case StatusOK:
	case StatusExpired, StatusInvalid:
		// The link is genuine (veil signed it), so its token parsed: one that does not
		// authenticate answers like an absent ref, or a link would tell which refs exist. The
		// audit above keeps the true status.
		http.Error(w, "blob expired", http.StatusGone)
		return
	default:
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	defer m.Close()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", "attachment")
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, m); err != nil {
		panic(http.ErrAbortHandler)
	}
}
