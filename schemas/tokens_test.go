package schemas

import (
	"strings"
	"testing"
)

func TestScanTokens(t *testing.T) {
	valid := func(s string) bool { return strings.HasPrefix(s, "veil:v1:") }
	tests := []struct {
		name  string
		data  map[string]any
		field string
		ok    bool
	}{
		{"no data", nil, "", true},
		{"no tokens", map[string]any{"text": "hi", "n": 1.0}, "", true},
		{"genuine token", map[string]any{"text": "veil:v1:abc"}, "", true},
		{"veil in the middle", map[string]any{"text": "see veil:x"}, "", true},
		{"forged top-level", map[string]any{"text": "veil:v9:abc"}, "data.text", false},
		{"forged in array", map[string]any{"items": []any{"ok", map[string]any{"t": "veil:"}}}, "data.items.1.t", false},
		{"forged key only", map[string]any{"veil:bad": "x"}, "", true},
		{"first by path order", map[string]any{"b": "veil:x", "a": []any{"veil:y"}, "c": "veil:z"}, "data.a.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field, ok := ScanTokens(&Entry{Data: tt.data}, valid)
			if field != tt.field || ok != tt.ok {
				t.Errorf("ScanTokens() = %q, %v; want %q, %v", field, ok, tt.field, tt.ok)
			}
		})
	}
}
