package reveal

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/internal/httpserve"
	"github.com/veil-project/veil/sinks/blob"
)

// Authenticator finds the principal an API key belongs to. *Principals and *PrincipalsFile
// implement it.
type Authenticator interface {
	Lookup(key APIKey) (Principal, bool)
}

// ServerConfig configures the reveal API. Zero values take the documented defaults.
type ServerConfig struct {
	// Addr is the listen address (host:port).
	Addr string
	// CertFile and KeyFile are the PEM certificate and key; the API speaks TLS 1.2 or newer.
	CertFile, KeyFile string
	// PlainHTTP serves without TLS. It is a development switch, refused unless Addr is a
	// loopback address.
	PlainHTTP bool

	Opener     *Opener       // required
	Principals Authenticator // required
	Auditor    Auditor       // required: no decrypt without an audit record
	Blobs      *blob.Service // optional: serves POST /v1/blobs/link and the signed links
	Logger     *slog.Logger  // default: discard

	// RatePerSecond and Burst bound each principal's requests (default 50/s, burst 100).
	RatePerSecond float64
	Burst         int
	// MaxBodyBytes bounds a request body (default 1 MiB; beyond: 413).
	MaxBodyBytes int64
	// MaxTokens bounds the tokens of one request (default 256; beyond: 413).
	MaxTokens int

	// Timeouts against slow clients; defaults 5s, 15s, 30s, 60s. RequestTimeout bounds the
	// store, KMS and audit work of one request (default 10s).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, RequestTimeout time.Duration

	// Now is the clock of audit records (default time.Now).
	Now func() time.Time
}

// Defaults of ServerConfig.
const (
	DefaultRatePerSecond = 50
	DefaultBurst         = 100
	DefaultMaxBodyBytes  = 1 << 20
	DefaultMaxTokens     = 256
)

// ErrPlainHTTP is returned by Listen when plain HTTP is asked for on an address that is not
// loopback, or when neither TLS nor plain HTTP is configured.
var ErrPlainHTTP = errors.New("reveal: plain HTTP refused")

// Server is the reveal API: POST /v1/reveal and GET /healthz.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	mu       sync.Mutex
	limiters map[string]*rate.Limiter

	mounts map[string]http.Handler // path prefix → handler (Mount)
}

// Mount serves h for every path under prefix (e.g. "/console/", the console). Call it before
// Serve; it is not safe to call concurrently with requests.
func (s *Server) Mount(prefix string, h http.Handler) {
	if s.mounts == nil {
		s.mounts = make(map[string]http.Handler)
	}
	s.mounts[prefix] = h
}

// Reveal opens tokens for p on the API's own path: the same authorization (p's kind and apps),
// one audit record per token with the given source (e.g. "console"), and the same fail-closed
// rule: a non-nil error means nothing may be shown. The caller clears the returned values.
// It draws on p's rate limit like an API request, and returns ErrRateLimited (nothing opened,
// nothing audited) when that is spent.
func (s *Server) Reveal(ctx context.Context, p Principal, reqID, source string, tokens []string) ([]Result, [][]byte, error) {
	if !s.limiter(p.Name).Allow() {
		return nil, nil, ErrRateLimited
	}
	return s.open(ctx, p, reqID, source, tokens)
}

// ErrRateLimited is returned by Reveal when the principal's request rate is spent.
var ErrRateLimited = errors.New("reveal: rate limit exceeded")

// NewServer checks cfg and applies defaults.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Opener == nil || cfg.Principals == nil || cfg.Auditor == nil {
		return nil, errors.New("reveal: Opener, Principals and Auditor are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ReadHeaderTimeout, 5*time.Second)
	def(&cfg.ReadTimeout, 15*time.Second)
	def(&cfg.WriteTimeout, 30*time.Second)
	def(&cfg.IdleTimeout, 60*time.Second)
	def(&cfg.RequestTimeout, 10*time.Second)
	if cfg.RatePerSecond <= 0 {
		cfg.RatePerSecond = DefaultRatePerSecond
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = DefaultMaxTokens
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, limiters: make(map[string]*rate.Limiter)}, nil
}

// Listen opens the listener the API is served on: TLS 1.2+ with the configured certificate, or
// plain HTTP when PlainHTTP is set and Addr is loopback. Anything else is refused.
func (s *Server) Listen() (net.Listener, error) {
	tc, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc == nil && !loopbackAddr(s.cfg.Addr) {
		return nil, fmt.Errorf("%w: %s is not a loopback address; plain HTTP is allowed only on loopback", ErrPlainHTTP, s.cfg.Addr)
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", s.cfg.Addr, err)
	}
	if tc == nil {
		// "localhost" could resolve anywhere: check what was actually bound.
		if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("%w: %s bound to non-loopback %s", ErrPlainHTTP, s.cfg.Addr, ln.Addr())
		}
		return ln, nil
	}
	return tls.NewListener(ln, tc), nil
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	switch {
	case s.cfg.CertFile != "" && s.cfg.PlainHTTP:
		return nil, fmt.Errorf("%w: a TLS certificate and the plain HTTP switch are both set", ErrPlainHTTP)
	case s.cfg.PlainHTTP:
		return nil, nil
	case s.cfg.CertFile == "" || s.cfg.KeyFile == "":
		return nil, fmt.Errorf("%w: no TLS certificate configured (tls.cert_file and tls.key_file), and plain HTTP is a development switch (dev.plain_http, loopback only)", ErrPlainHTTP)
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading reveal API certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, nil
}

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HTTPServer returns an http.Server for the API with the configured timeouts.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// Serve serves the API on ln until ctx is cancelled, then shuts down, giving requests in flight
// up to 5 seconds (httpserve.Serve). It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := httpserve.Serve(ctx, s.HTTPServer(), ln); err != nil {
		return fmt.Errorf("serving reveal API: %w", err)
	}
	return nil
}

// Handler returns the API's handler.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/reveal":
			if allowPost(w, r) {
				s.reveal(w, r)
			}
		case "/v1/blobs/link":
			if allowPost(w, r) {
				s.link(w, r)
			}
		case "/v1/openapi.json":
			serveOpenAPI(w, r)
		case "/healthz":
			if !allowGet(w, r) {
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok\n")
		default:
			for prefix, h := range s.mounts {
				if strings.HasPrefix(r.URL.Path, prefix) {
					h.ServeHTTP(w, r)
					return
				}
			}
			if s.cfg.Blobs != nil && strings.HasPrefix(r.URL.Path, blobLinkPrefix) {
				s.cfg.Blobs.Handler().ServeHTTP(w, r)
				return
			}
			writeError(w, http.StatusNotFound, "no such endpoint")
		}
	})
}

// allowPost reports whether r is a POST, and answers 405 (Allow: POST) when not.
func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return false
	}
	return true
}

// allowGet reports whether r is a GET or HEAD, and answers 405 (Allow: GET, HEAD) when not.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return false
	}
	return true
}

// Result is the answer for one token: Status, and Value: the JSON value when ok, the JSON string
// envelope.Redacted when expired or denied, absent when invalid. Only a token that does not parse
// is invalid: one that parses but does not authenticate answers expired, like an absent ref. String
// and LogValue never show an ok value.
type Result struct {
	Status Status          `json:"status"`
	Value  json.RawMessage `json:"value,omitempty"`
}

func (r Result) String() string {
	if r.Status == StatusOK {
		return "ok [redacted]"
	}
	return string(r.Status)
}

// GoString redacts like String.
func (r Result) GoString() string { return r.String() }

// LogValue redacts like String.
func (r Result) LogValue() slog.Value { return slog.StringValue(r.String()) }

// redactedJSON is the value of an expired or denied result.
var redactedJSON = json.RawMessage(strconv.Quote(envelope.Redacted))

type revealRequest struct {
	Tokens []string `json:"tokens"`
}

type revealResponse struct {
	Results []Result `json:"results"`
}

type errorResponse struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	b, _ := json.Marshal(errorResponse{Error: msg})
	w.Write(append(b, '\n'))
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// bearer extracts the key of an "Authorization: Bearer <key>" header.
func bearer(h string) (APIKey, bool) {
	const p = "bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return APIKey(strings.TrimSpace(h[len(p):])), true
}

func (s *Server) limiter(name string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.limiters[name]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.RatePerSecond), s.cfg.Burst)
		s.limiters[name] = l
	}
	return l
}

// authenticate answers 401 or 429 itself and reports false when the request may not proceed.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Principal, string, bool) {
	reqID := newRequestID()
	w.Header().Set("X-Request-Id", reqID)

	key, ok := bearer(r.Header.Get("Authorization"))
	var p Principal
	if ok {
		p, ok = s.cfg.Principals.Lookup(key)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="veil"`)
		writeError(w, http.StatusUnauthorized, "missing or unknown API key")
		s.log.Info("request refused", "request_id", reqID, "path", r.URL.Path, "reason", "unauthenticated", "remote", r.RemoteAddr)
		return Principal{}, reqID, false
	}
	if lim := s.limiter(p.Name); !lim.Allow() {
		res := lim.Reserve()
		d := res.Delay()
		res.Cancel()
		secs := int(math.Ceil(d.Seconds()))
		if secs < 1 || d == rate.InfDuration {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "rate limit exceeded")
		s.log.Info("request refused", "request_id", reqID, "principal", p.Name, "reason", "rate limit")
		return Principal{}, reqID, false
	}
	return p, reqID, true
}

func (s *Server) reveal(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, reqID, ok := s.authenticate(w, r)
	if !ok {
		return
	}

	if r.ContentLength > s.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.cfg.MaxBodyBytes))
		return
	}
	bp := bodyBufs.Get().(*[]byte)
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), *bp, r.ContentLength)
	defer putBody(bp, body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "reading body failed")
		return
	}
	tokens, ok := decodeRevealRequest(body)
	if !ok {
		// The decoder's message can quote the input, which holds tokens: name the problem only.
		writeError(w, http.StatusBadRequest, `body must be {"tokens": ["veil:v1:…", …]}`)
		return
	}
	switch {
	case len(tokens) == 0:
		writeError(w, http.StatusBadRequest, "tokens must not be empty")
		return
	case len(tokens) > s.cfg.MaxTokens:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d tokens", s.cfg.MaxTokens))
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	results, values, failed := s.open(ctx, p, reqID, "api", tokens)
	defer func() {
		for _, v := range values {
			clear(v)
		}
	}()
	if failed != nil {
		s.log.Warn("reveal failed", "request_id", reqID, "principal", p.Name, "err", failed)
		writeError(w, http.StatusServiceUnavailable, "store, key service or audit unavailable; retry")
		return
	}

	bp = bodyBufs.Get().(*[]byte)
	out, err := appendRevealResponse((*bp)[:0], results)
	defer putBody(bp, out)
	if err != nil {
		s.log.Error("reveal failed", "request_id", reqID, "principal", p.Name, "err", "encoding response")
		writeError(w, http.StatusInternalServerError, "encoding response failed")
		return
	}
	out = append(out, '\n')
	h := w.Header()
	h["Content-Type"], h["Cache-Control"] = headerJSON, headerNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.Write(out)
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("reveal", "request_id", reqID, "principal", p.Name, "tokens", len(results), "took", time.Since(start))
	}
}

// expiredOr answers StatusExpired for StatusInvalid and st otherwise.
func expiredOr(st Status) Status {
	if st == StatusInvalid {
		return StatusExpired
	}
	return st
}

// open opens each token for p and writes one audit record per token. It returns the results, the
// plaintext buffers to clear after use, and a non-nil error when a store, KMS or audit failure
// means nothing may be returned.
func (s *Server) open(ctx context.Context, p Principal, reqID, source string, tokens []string) ([]Result, [][]byte, error) {
	now := s.cfg.Now().UTC()
	results := make([]Result, len(tokens))
	recs := make([]AuditRecord, 0, len(tokens))
	var values [][]byte
	var failed error
	for i, t := range tokens {
		var (
			st  Status
			v   []byte
			rec AuditRecord
		)
		tok, err := envelope.ParseToken(t)
		parsed := err == nil
		switch {
		case !parsed:
			st = StatusInvalid
			rec = NewAuditRecord(nil, st)
		case !p.MayDecrypt(tok.App):
			st = StatusDenied
			rec = NewAuditRecord(&tok, st)
		default:
			v, st, err = s.cfg.Opener.OpenToken(ctx, tok)
			if err != nil {
				st, failed = StatusError, err
			}
			rec = NewAuditRecord(&tok, st)
		}
		rec.Time, rec.RequestID, rec.Source, rec.Principal, rec.Kind = now, reqID, source, p.Name, p.Kind
		recs = append(recs, rec)
		if failed != nil {
			break
		}
		switch {
		case st == StatusOK:
			values = append(values, v)
			results[i] = Result{Status: st, Value: v}
		case st == StatusExpired, st == StatusDenied, st == StatusInvalid && parsed:
			// A token that parses but does not authenticate answers like an absent ref: telling
			// them apart would let a caller probe which (predictable) refs exist. The audit
			// record above keeps the true status.
			results[i] = Result{Status: expiredOr(st), Value: redactedJSON}
		default:
			results[i] = Result{Status: StatusInvalid}
		}
	}
	// Fail closed: a value is released only after its audit record is written. The audit runs
	// even when opening failed, so the attempts that were made are on record.
	if err := s.cfg.Auditor.Audit(ctx, recs); err != nil && failed == nil {
		failed = err
	}
	return results, values, failed
}
