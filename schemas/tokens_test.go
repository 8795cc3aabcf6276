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
		{"forged at a registry path", map[string]any{"text": "veil:v9:abc"}, "data.text", false},
		{"forged under a registry path", map[string]any{"fields": map[string]any{"ssn 078-05-1120": "veil:v9:abc"}}, "data.fields", false},
		{"forged top-level, not a registry path", map[string]any{"ssn 078-05-1120": "veil:v9:abc"}, "data", false},
		{"forged in array", map[string]any{"items": []any{"ok", map[string]any{"t": "veil:"}}}, "data", false},
		{"registry path prefix of a name", map[string]any{"textual": "veil:v9:abc"}, "data", false},
		{"token-shaped member name", map[string]any{"veil:v1:abc": "x"}, "data", false},
		{"token-shaped member name under a registry path", map[string]any{"fields": map[string]any{"veil:v1:abc": "x"}}, "data.fields", false},
		{"first by report order", map[string]any{"b": "veil:x", "text": []any{"veil:y"}, "c": "veil:z"}, "data", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field, ok := ScanTokens(&Entry{Data: tt.data}, valid, "data.text", "data.fields")
			if field != tt.field || ok != tt.ok {
				t.Errorf("ScanTokens() = %q, %v; want %q, %v", field, ok, tt.field, tt.ok)
			}
		})
	}
}

func TestTokenOutsideData(t *testing.T) {
	tok := "veil:v1:abc"
	tests := []struct {
		name  string
		e     Entry
		field string
	}{
		{"none", Entry{ID: "e-1", Thread: Thread{ID: "t-1", Mode: "bot"}, User: User{ID: "u-1", Type: "user"}, Data: map[string]any{"text": tok}}, ""},
		{"id", Entry{ID: tok}, "id"},
		{"thread id", Entry{Thread: Thread{ID: tok}}, "thread.id"},
		{"thread mode", Entry{Thread: Thread{Mode: tok}}, "thread.mode"},
		{"user id", Entry{User: User{ID: tok}}, "user.id"},
		{"user type", Entry{User: User{Type: tok}}, "user.type"},
		{"component id", Entry{Component: &Component{ID: tok}}, "component.id"},
		{"trigger entry id", Entry{Trigger: &Trigger{EntryID: tok}}, "trigger.entry_id"},
		{"sensitive path", Entry{SensitivePaths: []string{"data.x", tok}}, "sensitive_paths"},
		{"prefix only", Entry{User: User{ID: "veil:"}}, "user.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field, found := TokenOutsideData(&tt.e)
			if field != tt.field || found != (tt.field != "") {
				t.Errorf("TokenOutsideData() = %q, %v; want %q", field, found, tt.field)
			}
		})
	}
}
