package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/veil-project/veil/reveal"
)

// session is a signed-in principal. The cookie holds only a random id; the table is keyed by its
// SHA-256. The API key is kept in memory so every request looks the principal up again: a
// principal removed from the principals file (or whose apps changed) loses or changes its view
// at once, not when the session ends.
type session struct {
	key      reveal.APIKey
	csrf     string
	started  time.Time
	lastSeen time.Time
}

// sessions is the in-memory session table, bounded in size.
type sessions struct {
	mu    sync.Mutex
	byID  map[[32]byte]*session
	codes map[[32]byte]signInCode // one-time sign-in codes (SignInLink)
	idle  time.Duration
	max   time.Duration
	now   func() time.Time
}

type signInCode struct {
	key     reveal.APIKey
	expires time.Time
}

// maxSessions bounds the table: beyond it the oldest session is dropped.
const maxSessions = 10000

func newSessions(idle, max time.Duration, now func() time.Time) *sessions {
	return &sessions{byID: make(map[[32]byte]*session), codes: make(map[[32]byte]signInCode), idle: idle, max: max, now: now}
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for key and returns its cookie value.
func (s *sessions) create(key reveal.APIKey) (string, *session) {
	id := randomToken()
	now := s.now()
	ss := &session{key: key, csrf: randomToken(), started: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if len(s.byID) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for h, v := range s.byID {
			if at.IsZero() || v.started.Before(at) {
				oldest, at = h, v.started
			}
		}
		delete(s.byID, oldest)
	}
	s.byID[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

// get returns the live session of a cookie value and marks it used; an idle or too old session
// is deleted.
func (s *sessions) get(id string) (*session, bool) {
	if id == "" || len(id) > 100 {
		return nil, false
	}
	h := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[h]
	if !ok {
		return nil, false
	}
	if now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.started) >= s.max {
		delete(s.byID, h)
		return nil, false
	}
	ss.lastSeen = now
	return ss, true
}

// end deletes the session of a cookie value.
func (s *sessions) end(id string) {
	h := sha256.Sum256([]byte(id))
	s.mu.Lock()
	delete(s.byID, h)
	s.mu.Unlock()
}

// sweep drops expired sessions and codes; s.mu is held.
func (s *sessions) sweep(now time.Time) {
	for h, ss := range s.byID {
		if now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.started) >= s.max {
			delete(s.byID, h)
		}
	}
	for h, c := range s.codes {
		if !now.Before(c.expires) {
			delete(s.codes, h)
		}
	}
}

// code mints a one-time sign-in code for key, valid for ttl.
func (s *sessions) code(key reveal.APIKey, ttl time.Duration) string {
	c := randomToken()
	now := s.now()
	s.mu.Lock()
	s.sweep(now)
	if len(s.codes) < maxSessions {
		s.codes[sha256.Sum256([]byte(c))] = signInCode{key: key, expires: now.Add(ttl)}
	}
	s.mu.Unlock()
	return c
}

// redeem consumes a one-time code.
func (s *sessions) redeem(c string) (reveal.APIKey, bool) {
	if c == "" || len(c) > 100 {
		return "", false
	}
	h := sha256.Sum256([]byte(c))
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.codes[h]
	delete(s.codes, h)
	if !ok || !s.now().Before(sc.expires) {
		return "", false
	}
	return sc.key, true
}

// validCSRF compares a submitted token with the session's in constant time.
func (ss *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}
