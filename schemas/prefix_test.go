package schemas_test

import (
	"strings"
	"testing"

	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/schemas"
)

// TestTokenPrefixes: every token envelope writes is a token to schemas (so the fail-closed input
// check never lets a genuine token through as data), and schemas treats every other version as a
// token too (forged, as far as this build is concerned) while envelope does not.
func TestTokenPrefixes(t *testing.T) {
	if !strings.HasPrefix(envelope.TokenPrefix, schemas.TokenPrefix) {
		t.Fatalf("envelope.TokenPrefix %q does not start with schemas.TokenPrefix %q", envelope.TokenPrefix, schemas.TokenPrefix)
	}
	for _, tt := range []struct {
		s                 string
		schemas, envelope bool
	}{
		{envelope.TokenPrefix + "AAAA", true, true},
		{"veil:v9:AAAA", true, false},
		{"veil:", true, false},
		{"Veil:v1:AAAA", false, false},
		{"veil", false, false},
		{"", false, false},
	} {
		if got := schemas.IsToken(tt.s); got != tt.schemas {
			t.Errorf("schemas.IsToken(%q) = %v, want %v", tt.s, got, tt.schemas)
		}
		if got := envelope.IsToken(tt.s); got != tt.envelope {
			t.Errorf("envelope.IsToken(%q) = %v, want %v", tt.s, got, tt.envelope)
		}
	}
}
