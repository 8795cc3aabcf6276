package names

import (
	"errors"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/nametest"
)

func TestValid(t *testing.T) {
	nametest.Run(t, MaxLen, func(t *testing.T, tt nametest.Case) {
		if got := Valid(tt.S); got != tt.Valid {
			t.Errorf("Valid(%q) = %v, want %v", tt.S, got, tt.Valid)
		}
		err := Check(tt.S)
		if (err == nil) != tt.Valid {
			t.Errorf("Check(%q) = %v, want valid %v", tt.S, err, tt.Valid)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || (tt.S != "" && strings.Contains(err.Error(), tt.S))) {
			t.Errorf("Check(%q) = %v, want ErrInvalid without the name", tt.S, err)
		}
	})
}
