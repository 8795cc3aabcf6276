package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/internal/periodic"
	"github.com/veil-project/veil/ops"
	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// Revealer opens tokens for a principal through the reveal API's own authorization and audit
// path. *reveal.Server implements it.
type Revealer interface {
	Reveal(ctx context.Context, p reveal.Principal, reqID, source string, tokens []string) ([]reveal.Result, [][]byte, error)
}

// KeyLister lists the stored app keys (no key material). *keyring.Keyring implements it.
type KeyLister interface {
	Keys(ctx context.Context) ([]keyring.KeyInfo, error)
}

// Config configures the console. Zero values take the documented defaults.
type Config struct {
	Principals reveal.Authenticator // required: who may sign in
	Revealer   Revealer             // required: the reveal API's decrypt path
	Log        *Log                 // required: reads the encrypted, dead-letter and audit topics
	Store      store.Store          // required: tells live sealed values from gone ones (no decrypt)
	Ledgers    []string             // required: the ledgers the Logs page searches

	Keys      KeyLister      // optional: keys per app on the Status page
	Metrics   *ops.Metrics   // optional: throughput, lag, seal latency on the Status page
	Readiness *ops.Readiness // optional: dependencies on the Status page

	// Secure marks the session cookie Secure: set it when the listener speaks TLS.
	Secure bool
	// IdleTimeout ends a session unused this long (default 15m); MaxSession ends any session
	// this old (default 8h).
	IdleTimeout, MaxSession time.Duration
	// PageSize is the entries per Logs page (default 50).
	PageSize int
	// ScanBudget bounds the records read to answer one page (default 200,000); a page that runs
	// out says so.
	ScanBudget int64
	// Slack is how far record time may lag behind entry time when a time range is searched
	// (default 1h).
	Slack time.Duration
	// RequestTimeout bounds the broker, store and reveal work of one page (default 15s): with
	// the broker or the store down a page answers 503 instead of hanging.
	RequestTimeout time.Duration
	// FutureSkew is how far in the future the pipeline accepts an entry's ts (limits.future_skew,
	// default 5m): no record was written earlier than its ts minus this.
	FutureSkew time.Duration
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default: discard; never receives a value
}

// Console is the web console. It is an http.Handler for the paths under Prefix.
type Console struct {
	cfg      Config
	log      *slog.Logger
	sess     *sessions
	pages    map[string]*template.Template
	static   http.Handler
	signins  *limiters
	sampler  *sampler
	ledgerOK map[string]bool
}

// New checks cfg and applies defaults. The metrics sampler runs in Run, until its ctx ends.
func New(cfg Config) (*Console, error) {
	if cfg.Principals == nil || cfg.Revealer == nil || cfg.Log == nil || cfg.Store == nil || len(cfg.Ledgers) == 0 {
		return nil, errors.New("console: Principals, Revealer, Log, Store and Ledgers are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.MaxSession <= 0 {
		cfg.MaxSession = 8 * time.Hour
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	if cfg.ScanBudget <= 0 {
		cfg.ScanBudget = 200_000
	}
	if cfg.Slack <= 0 {
		cfg.Slack = time.Hour
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.FutureSkew <= 0 {
		cfg.FutureSkew = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{
		cfg: cfg, log: log, sess: newSessions(cfg.IdleTimeout, cfg.MaxSession, cfg.Now),
		pages: make(map[string]*template.Template), signins: &limiters{m: make(map[string]*rate.Limiter)},
		ledgerOK: make(map[string]bool),
	}
	for _, l := range cfg.Ledgers {
		c.ledgerOK[l] = true
	}
	funcs := template.FuncMap{
		"redacted": func() string { return Redacted },
		"utc":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"dict": func(kv ...any) map[string]any {
			m := make(map[string]any, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}
	for _, p := range []string{"signin", "logs", "entry", "deadletters", "status", "audit", "error"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/card.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parsing template %s: %w", p, err)
		}
		c.pages[p] = t
	}
	sub, _ := fs.Sub(assets, "static")
	c.static = http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(sub)))
	if cfg.Metrics != nil {
		c.sampler = newSampler(cfg.Metrics, cfg.Now)
	}
	return c, nil
}

// Run samples veil's metrics every interval (default 10s) for the Status page's charts until
// ctx ends.
func (c *Console) Run(ctx context.Context, interval time.Duration) {
	if c.sampler == nil {
		return
	}
	if interval <= 0 {
		interval = 10 * time.Second
	}
	periodic.NowAndEvery(ctx, interval, func(context.Context) { c.sampler.sample() })
}

// SignInLink returns a path under Prefix that signs the holder of key in once, within ttl
// (default 10 minutes): for `veil demo`, which prints it. An unknown key is refused.
func (c *Console) SignInLink(key reveal.APIKey, ttl time.Duration) (string, error) {
	if _, ok := c.cfg.Principals.Lookup(key); !ok {
		return "", errors.New("console: unknown API key")
	}
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return Prefix + "link?code=" + url.QueryEscape(c.sess.code(key, ttl)), nil
}

const (
	sessionCookie = "veil_session"
	preCookie     = "veil_signin"
)

// contentSecurityPolicy allows no script at all, styles and images from the console only, forms
// posting to the console only, and no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	path := strings.TrimPrefix(r.URL.Path, Prefix)
	if strings.HasPrefix(path, "static/") {
		h.Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
		return
	}
	// Pages show entries and may show revealed values: never cached anywhere.
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost && !sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "cross-site request refused")
		return
	}
	switch path {
	case "", "index":
		http.Redirect(w, r, Prefix+"logs", http.StatusSeeOther)
	case "signin":
		c.signin(w, r)
	case "link":
		c.link(w, r)
	default:
		pg, ok := sessionPages[path]
		if !ok {
			c.fail(w, r, http.StatusNotFound, "no such page")
			return
		}
		c.withSession(w, r, pg.post, func(w http.ResponseWriter, r *http.Request, rq *request) { pg.serve(c, w, r, rq) })
	}
}

// sessionPages are the pages behind sign-in, by path; post marks the ones that change state
// (POST only, with the session's CSRF token: see withSession).
var sessionPages = map[string]struct {
	post  bool
	serve func(*Console, http.ResponseWriter, *http.Request, *request)
}{
	"signout":     {true, (*Console).signout},
	"logs":        {false, (*Console).logs},
	"thread":      {false, (*Console).thread},
	"entry":       {false, (*Console).entry},
	"reveal":      {true, (*Console).reveal},
	"deadletters": {false, (*Console).deadletters},
	"status":      {false, (*Console).status},
	"audit":       {false, (*Console).audit},
}

// sameOrigin refuses a state change a browser marks as coming from another site. Browsers send
// Sec-Fetch-Site and Origin on POST; a non-browser client sends neither and still needs the
// CSRF token.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// request is what a signed-in handler gets.
type request struct {
	p    reveal.Principal
	sess *session
	id   string // request id
}

// withSession runs h for a signed-in principal; a state change (post) needs POST and the
// session's CSRF token.
func (c *Console) withSession(w http.ResponseWriter, r *http.Request, post bool, h func(http.ResponseWriter, *http.Request, *request)) {
	ck, _ := r.Cookie(sessionCookie)
	var ss *session
	ok := false
	if ck != nil {
		ss, ok = c.sess.get(ck.Value)
	}
	var p reveal.Principal
	if ok {
		if p, ok = c.cfg.Principals.Lookup(ss.key); !ok {
			c.sess.end(ck.Value) // the principal was removed
		}
	}
	if !ok {
		if post {
			c.fail(w, r, http.StatusForbidden, "not signed in")
			return
		}
		http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
		return
	}
	if post {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			c.fail(w, r, http.StatusMethodNotAllowed, "use POST")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil || !ss.validCSRF(r.PostForm.Get("csrf")) {
			c.log.Info("console request refused", "principal", p.Name, "path", r.URL.Path, "reason", "csrf")
			c.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token")
			return
		}
	} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		c.fail(w, r, http.StatusMethodNotAllowed, "use GET")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
	defer cancel()
	h(w, r.WithContext(ctx), &request{p: p, sess: ss, id: newRequestID()})
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// visible reports whether p may see entries of app (the metadata; decrypting is MayDecrypt).
func visible(p *reveal.Principal, app string) bool {
	for _, a := range p.Apps {
		if a == app || (a == reveal.AllApps && p.Kind == reveal.KindAdmin) {
			return true
		}
	}
	return false
}

// page is the data every template gets.
type page struct {
	Title     string
	Nav       string
	Principal *reveal.Principal
	CSRF      string
	Body      any
}

// render executes a page into a buffer first, so a template error never sends half a page, and
// clears the buffer after writing (it may hold revealed values).
func (c *Console) render(w http.ResponseWriter, code int, name string, pg page) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", pg); err != nil {
		c.log.Error("console: rendering page", "page", name, "err", err)
		http.Error(w, "rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	w.Write(buf.Bytes())
	clear(buf.Bytes()[:buf.Cap()])
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	c.render(w, code, "error", page{Title: http.StatusText(code), Body: msg})
}

// What a page reads from, named in its answer when it does not answer.
const (
	fromBroker = "the broker"
	fromStore  = "the encrypted store"
)

// unavailable answers 503 when a page's read from the broker or the encrypted store failed, and
// logs the error with what the console was doing and for whom.
func (c *Console) unavailable(w http.ResponseWriter, r *http.Request, p *reveal.Principal, doing, from string, err error) {
	c.log.Warn("console: "+doing, "principal", p.Name, "err", err)
	c.fail(w, r, http.StatusServiceUnavailable, from+" did not answer; retry")
}

// signin shows the sign-in form (GET) or exchanges an API key for a session (POST). The form
// carries a token that must match a cookie set with it (double submit), so another site cannot
// sign a browser in under its own key.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	type body struct {
		Pre, Error string
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		pre := randomToken()
		http.SetCookie(w, &http.Cookie{Name: preCookie, Value: pre, Path: Prefix, HttpOnly: true,
			Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode, MaxAge: 600})
		c.render(w, http.StatusOK, "signin", page{Title: "Sign in", Body: body{Pre: pre}})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		ck, _ := r.Cookie(preCookie)
		if err := r.ParseForm(); err != nil || ck == nil || ck.Value == "" || r.PostForm.Get("csrf") != ck.Value {
			c.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token: reload the sign-in page")
			return
		}
		if !c.signins.allow(remoteHost(r)) {
			c.fail(w, r, http.StatusTooManyRequests, "too many sign-in attempts; wait a moment")
			return
		}
		key := reveal.APIKey(strings.TrimSpace(r.PostForm.Get("key")))
		if _, ok := c.cfg.Principals.Lookup(key); !ok {
			c.log.Info("console sign-in refused", "remote", r.RemoteAddr)
			pre := randomToken()
			http.SetCookie(w, &http.Cookie{Name: preCookie, Value: pre, Path: Prefix, HttpOnly: true,
				Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode, MaxAge: 600})
			c.render(w, http.StatusUnauthorized, "signin", page{Title: "Sign in", Body: body{Pre: pre, Error: "Unknown API key."}})
			return
		}
		c.startSession(w, r, key)
	default:
		w.Header().Set("Allow", "GET, POST")
		c.fail(w, r, http.StatusMethodNotAllowed, "use GET or POST")
	}
}

// link redeems a one-time sign-in code (SignInLink).
func (c *Console) link(w http.ResponseWriter, r *http.Request) {
	key, ok := c.sess.redeem(r.URL.Query().Get("code"))
	if ok {
		_, ok = c.cfg.Principals.Lookup(key)
	}
	if !ok {
		c.fail(w, r, http.StatusForbidden, "this sign-in link is used up or expired")
		return
	}
	c.startSession(w, r, key)
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, key reveal.APIKey) {
	p, _ := c.cfg.Principals.Lookup(key)
	id, _ := c.sess.create(key)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: Prefix, HttpOnly: true,
		Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: preCookie, Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	c.log.Info("console sign-in", "principal", p.Name, "kind", string(p.Kind))
	http.Redirect(w, r, Prefix+"logs", http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, rq *request) {
	if ck, _ := r.Cookie(sessionCookie); ck != nil {
		c.sess.end(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	c.log.Info("console sign-out", "principal", rq.p.Name)
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// appsOf lists the apps p names (for the app filter); "*" for an admin of every app.
func appsOf(p *reveal.Principal) []string {
	return slices.Clone(p.Apps)
}

// limiters bounds sign-in attempts per remote host (5/s, burst 20), so one client guessing keys
// cannot lock everyone else out. The table is bounded: when full it starts over.
type limiters struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (l *limiters) allow(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[host]
	if !ok {
		if len(l.m) >= maxSessions {
			clear(l.m)
		}
		lim = rate.NewLimiter(5, 20)
		l.m[host] = lim
	}
	return lim.Allow()
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
