package ledgers

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The nine ledgers and their TTLs, from the Meya sensitive data guide.
var defaultLedgers = []Ledger{
	{Name: "event", TTL: 24 * time.Hour, Rule: RuleEvent},
	{Name: "bot", TTL: time.Hour, Rule: RuleEvent},
	{Name: "http", TTL: time.Hour, Rule: RuleTransport},
	{Name: "ws", TTL: time.Hour, Rule: RuleTransport},
	{Name: "log", TTL: time.Hour, Rule: RuleEvent},
	{Name: "presence", TTL: time.Hour, Rule: RuleEvent},
	{Name: "thread", TTL: time.Hour, Rule: RuleEvent},
	{Name: "user", TTL: time.Hour, Rule: RuleEvent},
	{Name: "blob", TTL: 24 * time.Hour, Rule: RuleMedia},
}

// MaxTTL is the longest TTL of any ledger. Keys that sealed data must outlive it.
const MaxTTL = 24 * time.Hour

// ErrTTLOverride is returned (wrapped) by NewTable for an override it refuses.
var ErrTTLOverride = errors.New("invalid TTL override")

// Table is the ledger table, possibly with shortened TTLs. It is immutable and safe for
// concurrent use.
type Table struct {
	byName map[string]Ledger
	order  []string
}

// defaultTable holds the TTLs of DESIGN §3; Lookup and All read it.
var defaultTable = mustTable(nil)

func mustTable(overrides map[string]time.Duration) *Table {
	t, err := NewTable(overrides)
	if err != nil {
		panic(err)
	}
	return t
}

// NewTable returns the ledger table: the TTLs of DESIGN §3, with the TTLs in overrides, keyed by
// ledger name. An override may only shorten a TTL, to a whole number of seconds of at least one second: data must never
// outlive what the ledger promises. Unknown ledger names are refused too, so a typo cannot silently
// leave a TTL at its default.
func NewTable(overrides map[string]time.Duration) (*Table, error) {
	t := &Table{byName: make(map[string]Ledger, len(defaultLedgers))}
	for _, l := range defaultLedgers {
		t.byName[l.Name] = l
		t.order = append(t.order, l.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(overrides)) {
		d := overrides[name]
		l, ok := t.byName[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("overriding TTL of %q: unknown ledger: %w", name, ErrTTLOverride)
		case d < time.Second || d%time.Second != 0:
			return nil, fmt.Errorf("overriding TTL of %s: %v is not a whole number of seconds ≥ 1s: %w", name, d, ErrTTLOverride)
		case d > l.TTL:
			return nil, fmt.Errorf("overriding TTL of %s: %v is longer than %v: %w", name, d, l.TTL, ErrTTLOverride)
		}
		l.TTL = d
		t.byName[name] = l
	}
	return t, nil
}

// Lookup returns the ledger called name.
func (t *Table) Lookup(name string) (Ledger, bool) {
	l, ok := t.byName[name]
	return l, ok
}

// All returns the ledgers in the order of DESIGN §3.
func (t *Table) All() []Ledger {
	out := make([]Ledger, len(t.order))
	for i, n := range t.order {
		out[i] = t.byName[n]
	}
	return out
}

// Lookup returns the ledger called name from the default table.
func Lookup(name string) (Ledger, bool) { return defaultTable.Lookup(name) }

// All returns the nine ledgers of the default table.
func All() []Ledger { return defaultTable.All() }

// Expiry returns when data of an entry with event time ts expires: ts + TTL, truncated to whole
// seconds, in UTC. It depends on the event time only, so replays and copies never extend it.
func (l Ledger) Expiry(ts time.Time) time.Time {
	return ts.Add(l.TTL).Truncate(time.Second).UTC()
}

// String returns the rule's name.
func (r Rule) String() string {
	switch r {
	case RuleEvent:
		return "event"
	case RuleTransport:
		return "transport"
	case RuleMedia:
		return "media"
	}
	return "unknown"
}
