package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateApp(t *testing.T) {
	tests := []struct {
		name string
		app  string
		ok   bool
	}{
		{"simple", "app-42", true},
		{"all punctuation", "a-b_c.d", true},
		{"colon", "a:b", false},
		{"at", "a@b", false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"max length", strings.Repeat("a", MaxAppLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxAppLen+1), false},
		{"nul", "a\x00b", false},
		{"open brace", "a{b", false},
		{"close brace", "a}b", false},
		{"glob star", "a*", false},
		{"glob question", "a?", false},
		{"glob class", "a[b]", false},
		{"backslash", `a\b`, false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"non-ascii", "appé", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateApp(tt.app)
			if tt.ok && err != nil {
				t.Fatalf("ValidateApp(%q) = %v, want nil", tt.app, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidApp) {
				t.Fatalf("ValidateApp(%q) = %v, want ErrInvalidApp", tt.app, err)
			}
			if err != nil && len(tt.app) > 0 && strings.Contains(err.Error(), tt.app) {
				t.Fatalf("ValidateApp(%q) error %q repeats the input", tt.app, err)
			}
		})
	}
}

func TestValidateItems(t *testing.T) {
	tests := []struct {
		name string
		apps []string
		ok   bool
	}{
		{"none", nil, true},
		{"all valid", []string{"app-1", "app-2"}, true},
		{"one invalid", []string{"app-1", "a:b", "app-2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := make([]Item, len(tt.apps))
			for i, a := range tt.apps {
				items[i] = Item{App: a}
			}
			err := ValidateItems(items)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidApp) {
				t.Errorf("ValidateItems(%q) = %v, want ok %t (else ErrInvalidApp)", tt.apps, err, tt.ok)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	exp := time.Unix(1_000, 0)
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"well before", time.Unix(900, 0), false},
		{"last instant before", time.Unix(999, 999_999_999), false},
		{"at expiry", time.Unix(1_000, 0), true},
		{"within expiry second", time.Unix(1_000, 500_000_000), true},
		{"after", time.Unix(1_001, 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Expired(exp, tt.now); got != tt.want {
				t.Fatalf("Expired(%v, %v) = %v, want %v", exp, tt.now, got, tt.want)
			}
		})
	}
	// A fractional expiry counts from the start of its second: never live past it.
	if got := Expired(time.Unix(1_000, 900_000_000), time.Unix(1_000, 100_000_000)); !got {
		t.Fatalf("Expired(1000.9, 1000.1) = false, want true")
	}
}
