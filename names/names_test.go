package names

import (
	"testing"

	"github.com/veil-project/veil/internal/nametest"
)

func TestValid(t *testing.T) {
	nametest.Run(t, MaxLen, func(t *testing.T, tt nametest.Case) {
		if got := Valid(tt.S); got != tt.Valid {
			t.Errorf("Valid(%q) = %v, want %v", tt.S, got, tt.Valid)
		}
	})
}

func TestCheck(t *testing.T) { nametest.RunCheck(t, MaxLen, "Check", Check, ErrInvalid) }
