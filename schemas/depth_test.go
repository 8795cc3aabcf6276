package schemas

import "testing"

const rawHead = `{"id":"e","app_id":"a","ledger":"l","type":"t","ts":"2026-01-02T03:04:05Z"`

// depthExceededRef is depthExceeded written byte by byte: the reference the fast scan must match.
func depthExceededRef(b []byte, maxDepth int) int64 {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return int64(i)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return -1
}

func FuzzDepthExceeded(f *testing.F) {
	for _, s := range []string{benchEntry, deep(40), `"\\"[[[`, `"\"[[[`, `"\\\"[["[[[`, `["\\\\\\\\"[[`, `"[[[`, `[["\`, `"\\`} {
		f.Add([]byte(s), 2)
	}
	f.Fuzz(func(t *testing.T, b []byte, maxDepth int) {
		maxDepth = maxDepth%40 + 1
		if got, want := depthExceeded(b, maxDepth), depthExceededRef(b, maxDepth); got != want {
			t.Fatalf("depthExceeded(%q, %d) = %d, want %d", b, maxDepth, got, want)
		}
	})
}
