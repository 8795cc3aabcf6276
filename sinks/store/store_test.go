package store

import (
	"errors"
	"testing"
	"time"

	"github.com/veil-project/veil/internal/nametest"
)

func TestValidateApp(t *testing.T) {
	nametest.RunCheck(t, MaxAppLen, "ValidateApp", ValidateApp, ErrInvalidApp)
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
