package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func testToken() Token {
	t := Token{App: "app-42", Ref: testHeader().Ref, Field: 2}
	for i := range t.RefKEK {
		t.RefKEK[i] = 0xA0 + byte(i)
	}
	for i := range t.Tag {
		t.Tag[i] = byte(i)
	}
	return t
}

func TestTokenRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		app  string
	}{
		{"short app", "a"},
		{"typical app", "app-42"},
		{"max app", strings.Repeat("Z", MaxAppLen)},
		{"charset", "A.b_c-9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := testToken()
			tok.App = tt.app
			s := tok.Encode()
			if !IsToken(s) {
				t.Fatalf("IsToken(%q) = false, want true", s)
			}
			if got := string(tok.AppendEncode([]byte("x"))); got != "x"+s {
				t.Fatalf("AppendEncode = %q, want %q", got, "x"+s)
			}
			got, err := ParseToken(s)
			if err != nil {
				t.Fatalf("ParseToken: %v", err)
			}
			if got != tok {
				t.Fatalf("ParseToken(Encode(t)) = %v, want %v", got, tok)
			}
		})
	}
}

func TestParseTokenRejects(t *testing.T) {
	good := testToken().Encode()
	raw := func(f func([]byte) []byte) string {
		tok := testToken()
		return TokenPrefix + tokenEncoding.EncodeToString(f(tok.appendRaw(nil)))
	}
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"prefix only", TokenPrefix},
		{"other version", "veil:v2:" + good[len(TokenPrefix):]},
		{"padding", good + "=="},
		{"std alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+"},
		{"newline inside", good[:20] + "\n" + good[20:]},
		{"trailing byte", raw(func(b []byte) []byte { return append(b, 0) })},
		{"short", raw(func(b []byte) []byte { return b[:len(b)-1] })},
		{"app length zero", raw(func(b []byte) []byte { b[0] = 0; return b })},
		{"app length too long", raw(func(b []byte) []byte { b[0] = MaxAppLen + 1; return b })},
		{"app charset", raw(func(b []byte) []byte { b[1] = '/'; return b })},
		{"invalid app encodes to a rejected token", Token{App: "bad app"}.Encode()},
		{"huge", TokenPrefix + strings.Repeat("A", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseToken(tt.in)
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseToken = (%v, %v), want ErrInvalidToken", tok, err)
			}
		})
	}
	// A non-canonical last character (non-zero trailing bits) decodes to the same bytes under a
	// lenient decoder; the strict one must refuse it so tokens have one spelling.
	last := good[len(good)-1]
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		if c == last {
			continue
		}
		s := good[:len(good)-1] + string(c)
		if tok, err := ParseToken(s); err == nil && tok.Encode() != s {
			t.Fatalf("ParseToken(%q) accepted a token that re-encodes to %q", s, tok.Encode())
		}
	}
}

func TestTokenRedacts(t *testing.T) {
	tok := testToken()
	secretHex := fmt.Sprintf("%x", tok.RefKEK[:])
	enc := tok.Encode()
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("t", "token", tok)
	outputs := map[string]string{
		"String": tok.String(),
		"%v":     fmt.Sprintf("%v", tok),
		"%+v":    fmt.Sprintf("%+v", tok),
		"%#v":    fmt.Sprintf("%#v", tok),
		"%v ptr": fmt.Sprintf("%v", &tok),
		"%s":     fmt.Sprintf("%s", []Token{tok}),
		"slog":   logBuf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, secretHex) || strings.Contains(out, enc[len(TokenPrefix):]) ||
			strings.Contains(out, string(tok.RefKEK[:])) || strings.Contains(out, fmt.Sprint(tok.RefKEK)) {
			t.Errorf("%s output %q reveals the ref KEK", name, out)
		}
		if !strings.Contains(out, "app-42") || !strings.Contains(out, tok.Ref.String()) {
			t.Errorf("%s output %q does not name app and ref", name, out)
		}
	}
}

func TestAppKeyRedacts(t *testing.T) {
	k := testKey(t)
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("k", "key", k)
	for name, out := range map[string]string{"%v": fmt.Sprintf("%v", k), "%#v": fmt.Sprintf("%#v", k), "%+v": fmt.Sprintf("%+v", k), "slog": logBuf.String()} {
		if !strings.Contains(out, "app-42") || strings.Contains(out, "AEAD") || strings.Contains(out, "0x") {
			t.Errorf("AppKey %s output = %q, want app and period only", name, out)
		}
	}
}

func TestNewAppKeyRejects(t *testing.T) {
	tests := []struct {
		name string
		app  string
		kek  []byte
	}{
		{"short KEK", "app-42", make([]byte, 16)},
		{"long KEK", "app-42", make([]byte, 33)},
		{"bad app", "app 42", make([]byte, 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := NewAppKey(tt.app, 1, tt.kek); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("NewAppKey = (%v, %v), want ErrInvalidInput", k, err)
			}
		})
	}
}

// TestAppendBase64URL compares the token encoder with encoding/base64 on every length up to
// twice a token's (random, all-zero and all-one bytes), and on a run of every 12-bit value in
// order, which puts each one in every lookup position of the encoder's 6-byte step.
func TestAppendBase64URL(t *testing.T) {
	var all []byte
	for shift := 0; shift < 4; shift++ {
		all = all[:0]
		for i := range 1<<12 + shift {
			v := i - shift
			if v < 0 {
				v = 0
			}
			// Two 12-bit values per 3 bytes; shifting the start moves each value to another
			// position of the 48-bit step.
			if i%2 == 0 {
				all = append(all, byte(v>>4), byte(v<<4))
			} else {
				all[len(all)-1] |= byte(v >> 8)
				all = append(all, byte(v))
			}
		}
		got := appendBase64URL(nil, all)
		if want := base64.RawURLEncoding.AppendEncode(nil, all); !bytes.Equal(got, want) {
			t.Fatalf("appendBase64URL(every 12-bit value, shift %d) differs from encoding/base64", shift)
		}
	}
	for n := 0; n <= 2*tokenMaxRawLen; n++ {
		for _, fill := range []string{"random", "zeros", "ones"} {
			src := make([]byte, n)
			switch fill {
			case "random":
				rand.Read(src)
			case "ones":
				for i := range src {
					src[i] = 0xff
				}
			}
			got := appendBase64URL([]byte("p:"), src)
			want := base64.RawURLEncoding.AppendEncode([]byte("p:"), src)
			if !bytes.Equal(got, want) {
				t.Fatalf("appendBase64URL(%d %s bytes) = %q, want %q", n, fill, got, want)
			}
		}
	}
}
