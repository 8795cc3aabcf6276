// Package nametest is the one table of identifier cases for veil's one name rule (package names):
// the rule's own test and the tests of every check built on it (store.ValidateApp,
// keyring.ValidateApp) run the same rows through Run and RunCheck, so a case added for one is checked for all.
// It imports nothing of veil's, so the internal test of package names can use it. Tests only.
package nametest

import (
	"errors"
	"strings"
	"testing"
)

// Case is one identifier and whether the rule accepts it.
type Case struct {
	Name  string // the subtest name
	S     string
	Valid bool
}

// Run runs check as a subtest, named after the case, for every case of Cases(maxLen).
func Run(t *testing.T, maxLen int, check func(t *testing.T, c Case)) {
	t.Helper()
	for _, c := range Cases(maxLen) {
		t.Run(c.Name, func(t *testing.T) { check(t, c) })
	}
}

// RunCheck runs check (named name in messages) on every case of Cases(maxLen), a subtest each,
// and checks what it returns: nil exactly for the valid cases, otherwise an error wrapping
// sentinel that does not quote the name (an invalid name may be anything, data included).
func RunCheck(t *testing.T, maxLen int, name string, check func(string) error, sentinel error) {
	t.Helper()
	Run(t, maxLen, func(t *testing.T, c Case) {
		err := check(c.S)
		if (err == nil) != c.Valid {
			t.Errorf("%s(%q) = %v, want valid %v", name, c.S, err, c.Valid)
		}
		if err != nil && !errors.Is(err, sentinel) {
			t.Errorf("%s(%q) = %v, want it to wrap %v", name, c.S, err, sentinel)
		}
		if err != nil && c.S != "" && strings.Contains(err.Error(), c.S) {
			t.Errorf("%s(%q) error %q repeats the input", name, c.S, err)
		}
	})
}

// Cases are the identifier cases for a rule whose longest identifier is maxLen bytes.
func Cases(maxLen int) []Case {
	return []Case{
		{"app id", "app-42", true},
		{"entry type", "meya.text.event.say", true},
		{"dead-letter app", "veil.deadletter", true},
		{"all punctuation", "a-b_c.d", true},
		{"mixed case", "A.b_c-9", true},
		{"one letter", "a", true},
		{"underscore edges", "_a_", true},
		{"digits", "42", true},
		{"longest", strings.Repeat("a", maxLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", maxLen+1), false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"leading dot", ".hidden", false},
		{"trailing dot", "app.", false},
		{"leading dash", "-rf", false},
		{"trailing dash", "app-", false},
		{"slash", "app/1", false},
		{"short slash", "a/b", false},
		{"backslash", `a\b`, false},
		{"path escape", "../app-1", false},
		{"space", "app 1", false},
		{"short space", "a b", false},
		{"colon", "app:1", false},
		{"short colon", "a:b", false},
		{"at", "a@b", false},
		{"at digit", "a@1", false},
		{"glob star", "app*", false},
		{"trailing star", "a*", false},
		{"glob question", "a?", false},
		{"glob class", "a[b]", false},
		{"open brace", "a{b", false},
		{"close brace", "a}b", false},
		{"brace", "app{1}", false},
		{"newline", "app\n", false},
		{"non-ASCII", "appé", false},
		{"only non-ASCII", "é", false},
		{"NUL", "app\x00", false},
		{"inner NUL", "a\x00b", false},
		{"short NUL", "a\x00", false},
	}
}
