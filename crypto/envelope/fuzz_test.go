package envelope

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseToken(f *testing.F) {
	f.Add(testToken().Encode())
	f.Add(Token{App: strings.Repeat("a", MaxAppLen)}.Encode())
	f.Add(TokenPrefix)
	f.Add("veil:v1:AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if got := tok.Encode(); got != s {
			t.Fatalf("ParseToken(%q).Encode() = %q, want the input", s, got)
		}
		again, err := ParseToken(tok.Encode())
		if err != nil || again != tok {
			t.Fatalf("ParseToken(Encode(t)) = (%v, %v), want t", again, err)
		}
	})
}

func FuzzRecordUnmarshal(f *testing.F) {
	for _, n := range []int{0, 1, 3} {
		rec, _, err := SealWith(testKey(f), newDetRand("fuzz"), testHeader(), testFields(n, 5))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := rec.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec Record
		if err := rec.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := rec.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed record: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("MarshalBinary(UnmarshalBinary(b)) != b")
		}
	})
}

// FuzzOpen opens fuzzed record bytes with fuzzed token strings under the genuine key. Whatever it
// is given, Open may only ever return the genuine plaintext of the field the token names, and
// only for the genuine token on a record whose authenticated parts are the genuine ones.
func FuzzOpen(f *testing.F) {
	key := testKey(f)
	fields := testFields(3, 11)
	fields[1].Value = nil
	rec, toks, err := SealWith(key, newDetRand("fuzz open"), testHeader(), fields)
	if err != nil {
		f.Fatal(err)
	}
	recBytes, _ := rec.MarshalBinary()
	genuine := map[string]int{}
	for i, tok := range toks {
		s := tok.Encode()
		genuine[s] = i
		f.Add(recBytes, s)
	}
	other, otherToks, _ := SealWith(key, newDetRand("other"), testHeader(), fields)
	otherBytes, _ := other.MarshalBinary()
	f.Add(otherBytes, toks[0].Encode())
	f.Add(recBytes, otherToks[0].Encode())
	f.Add(recBytes[:len(recBytes)-1], toks[2].Encode())

	f.Fuzz(func(t *testing.T, b []byte, s string) {
		var r Record
		if r.UnmarshalBinary(b) != nil {
			return
		}
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		pt, err := OpenWith(key, &r, tok, testNow)
		if err != nil {
			if pt != nil {
				t.Fatalf("Open returned plaintext with error %v", err)
			}
			return
		}
		i, ok := genuine[s]
		if !ok {
			t.Fatalf("Open succeeded with a token that was never issued: %v", tok)
		}
		if !bytes.Equal(pt, fields[i].Value) {
			t.Fatalf("Open returned a value that was not sealed in field %d", i)
		}
		if r.App != rec.App || r.Ledger != rec.Ledger || r.Ref != rec.Ref || !r.Expiry.Equal(rec.Expiry) || r.Period != rec.Period || !bytes.Equal(r.WrappedDEK, rec.WrappedDEK) ||
			r.Fields[i].Path != rec.Fields[i].Path || !bytes.Equal(r.Fields[i].Ciphertext, rec.Fields[i].Ciphertext) {
			t.Fatalf("Open succeeded on a record whose authenticated parts were changed")
		}
	})
}
