package names

import (
	"errors"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"app id", "app-42", true},
		{"entry type", "meya.text.event.say", true},
		{"dead-letter app", "veil.deadletter", true},
		{"one letter", "a", true},
		{"underscore edges", "_a_", true},
		{"digits", "42", true},
		{"longest", strings.Repeat("a", MaxLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxLen+1), false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"leading dot", ".hidden", false},
		{"trailing dot", "app.", false},
		{"leading dash", "-rf", false},
		{"trailing dash", "app-", false},
		{"slash", "app/1", false},
		{"path escape", "../app-1", false},
		{"space", "app 1", false},
		{"colon", "app:1", false},
		{"glob", "app*", false},
		{"brace", "app{1}", false},
		{"newline", "app\n", false},
		{"non-ASCII", "appé", false},
		{"NUL", "app\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Valid(tt.s); got != tt.want {
				t.Errorf("Valid(%q) = %v, want %v", tt.s, got, tt.want)
			}
			err := Check(tt.s)
			if (err == nil) != tt.want {
				t.Errorf("Check(%q) = %v, want valid %v", tt.s, err, tt.want)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || (tt.s != "" && strings.Contains(err.Error(), tt.s))) {
				t.Errorf("Check(%q) = %v, want ErrInvalid without the name", tt.s, err)
			}
		})
	}
}
