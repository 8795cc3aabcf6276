package ops

import (
	"slices"
	"strings"
	"sync"
)

// Readiness is a set of named conditions ("broker", "kms", "store", …). The process is ready
// only when every condition is true. Safe for concurrent use.
type Readiness struct {
	mu    sync.RWMutex
	conds map[string]Condition
}

// Condition is the state of one named condition. Reason says why it is false; it must not
// contain values (it is served on /readyz).
type Condition struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// NewReadiness returns a Readiness with the named conditions, all false ("starting").
func NewReadiness(names ...string) *Readiness {
	r := &Readiness{conds: make(map[string]Condition, len(names))}
	for _, n := range names {
		r.conds[n] = Condition{Name: n, Reason: "starting"}
	}
	return r
}

// Set sets condition name (adding it if new). reason is kept only when ok is false.
func (r *Readiness) Set(name string, ok bool, reason string) {
	if ok {
		reason = ""
	}
	r.mu.Lock()
	r.conds[name] = Condition{Name: name, OK: ok, Reason: reason}
	r.mu.Unlock()
}

// Ready reports whether every condition is true, and returns the false ones sorted by name.
// With no conditions at all, it is not ready.
func (r *Readiness) Ready() (bool, []Condition) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var failing []Condition
	for _, c := range r.conds {
		if !c.OK {
			failing = append(failing, c)
		}
	}
	slices.SortFunc(failing, func(a, b Condition) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return len(r.conds) > 0 && len(failing) == 0, failing
}

// Conditions returns every condition, sorted by name.
func (r *Readiness) Conditions() []Condition {
	r.mu.RLock()
	out := make([]Condition, 0, len(r.conds))
	for _, c := range r.conds {
		out = append(out, c)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Condition) int { return strings.Compare(a.Name, b.Name) })
	return out
}
