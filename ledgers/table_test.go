package ledgers

import (
	"errors"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	// The TTL table of the Meya guide, row by row.
	tests := []struct {
		name string
		ttl  time.Duration
		rule Rule
	}{
		{"event", 24 * time.Hour, RuleEvent},
		{"bot", time.Hour, RuleEvent},
		{"http", time.Hour, RuleTransport},
		{"ws", time.Hour, RuleTransport},
		{"log", time.Hour, RuleEvent},
		{"presence", time.Hour, RuleEvent},
		{"thread", time.Hour, RuleEvent},
		{"user", time.Hour, RuleEvent},
		{"blob", 24 * time.Hour, RuleMedia},
	}
	all := All()
	if len(all) != len(tests) {
		t.Fatalf("len(All()) = %d, want %d", len(all), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := Lookup(tt.name)
			if !ok {
				t.Fatalf("Lookup(%s) = absent", tt.name)
			}
			want := Ledger{Name: tt.name, TTL: tt.ttl, Rule: tt.rule}
			if l != want {
				t.Errorf("Lookup(%s) = %+v, want %+v", tt.name, l, want)
			}
			if all[i] != want {
				t.Errorf("All()[%d] = %+v, want %+v", i, all[i], want)
			}
			if l.TTL > MaxTTL {
				t.Errorf("%s TTL %v exceeds MaxTTL %v", tt.name, l.TTL, MaxTTL)
			}
		})
	}
	for _, name := range []string{"", "events", "Event", "deadletter"} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) = present, want absent", name)
		}
	}
}

func TestExpiry(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 0, 0, 999_999_999, time.FixedZone("x", 3600))
	tests := []struct {
		ledger string
		want   time.Time
	}{
		{"event", time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)},
		{"blob", time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)},
		{"http", time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)},
		{"thread", time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		l, _ := Lookup(tt.ledger)
		if got := l.Expiry(ts); !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("%s.Expiry(%v) = %v, want %v", tt.ledger, ts, got, tt.want)
		}
	}
}

func TestNewTable(t *testing.T) {
	tab, err := NewTable(map[string]time.Duration{"event": time.Hour, "http": time.Minute})
	if err != nil {
		t.Fatalf("NewTable(shorter) = %v", err)
	}
	for name, want := range map[string]time.Duration{"event": time.Hour, "http": time.Minute, "blob": 24 * time.Hour} {
		if l, _ := tab.Lookup(name); l.TTL != want {
			t.Errorf("Lookup(%s).TTL = %v, want %v", name, l.TTL, want)
		}
	}
	if l, _ := Lookup("event"); l.TTL != 24*time.Hour {
		t.Errorf("NewTable changed the default table: event TTL = %v", l.TTL)
	}
	if got := len(tab.All()); got != 9 {
		t.Errorf("len(All()) = %d, want 9", got)
	}
	bad := []struct {
		name string
		o    map[string]time.Duration
	}{
		{"longer", map[string]time.Duration{"http": 2 * time.Hour}},
		{"unknown ledger", map[string]time.Duration{"events": time.Hour}},
		{"zero", map[string]time.Duration{"log": 0}},
		{"negative", map[string]time.Duration{"log": -time.Hour}},
		{"sub-second", map[string]time.Duration{"log": 1500 * time.Millisecond}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewTable(tt.o); !errors.Is(err, ErrTTLOverride) {
				t.Errorf("NewTable(%v) = %v, want ErrTTLOverride", tt.o, err)
			}
		})
	}
	if tab, err := NewTable(map[string]time.Duration{"event": 24 * time.Hour}); err != nil || tab == nil {
		t.Errorf("NewTable(equal TTL) = %v, want nil", err)
	}
}
