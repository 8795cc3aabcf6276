package envelope

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	rec, _ := mustSeal(t, testKey(t), testHeader(), testFields(4, 17))
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != rec.binarySize() {
		t.Errorf("len(MarshalBinary) = %d, want %d", len(b), rec.binarySize())
	}
	if b2, _ := rec.AppendBinary([]byte("pre")); !bytes.Equal(b2[3:], b) {
		t.Errorf("AppendBinary differs from MarshalBinary")
	}
	var got Record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, rec) {
		t.Errorf("UnmarshalBinary(MarshalBinary(r)) = %+v, want %+v", got, *rec)
	}
	// The record must not alias the input.
	clear(b)
	if !reflect.DeepEqual(&got, rec) {
		t.Errorf("record changed when its input buffer was cleared")
	}
}

func TestRecordUnmarshalRejects(t *testing.T) {
	rec, _ := mustSeal(t, testKey(t), testHeader(), testFields(1, 4))
	good, _ := rec.MarshalBinary()
	edit := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	appLenAt, ledgerLenAt := 1, 2+len(rec.App)
	countAt := recordFixedLen - 1 + len(rec.App) + len(rec.Ledger)
	pathLenAt := countAt + 1
	ctLenAt := pathLenAt + 2 + len(rec.Fields[0].Path)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"version 0", edit(func(b []byte) []byte { b[0] = 0; return b })},
		{"version 1 (the GCM ref-KEK wrap)", edit(func(b []byte) []byte { b[0] = 1; return b })},
		{"next version", edit(func(b []byte) []byte { b[0] = recordVersion + 1; return b })},
		{"app length 0", edit(func(b []byte) []byte { b[appLenAt] = 0; return b })},
		{"app length 200", edit(func(b []byte) []byte { b[appLenAt] = 200; return b })},
		{"app charset", edit(func(b []byte) []byte { b[appLenAt+1] = ' '; return b })},
		{"ledger length 0", edit(func(b []byte) []byte { b[ledgerLenAt] = 0; return b })},
		{"ledger charset", edit(func(b []byte) []byte { b[ledgerLenAt+1] = 0xff; return b })},
		{"field count too high", edit(func(b []byte) []byte { b[countAt] = 255; return b })},
		{"field count too low", edit(func(b []byte) []byte { b[countAt] = 0; return b })},
		{"path length 0", edit(func(b []byte) []byte { b[pathLenAt], b[pathLenAt+1] = 0, 0; return b })},
		{"path length huge", edit(func(b []byte) []byte { b[pathLenAt] = 0xff; return b })},
		{"ciphertext length huge", edit(func(b []byte) []byte { b[ctLenAt] = 0xff; return b })},
		{"ciphertext shorter than a tag", edit(func(b []byte) []byte { b[ctLenAt+3] = tagSize - 1; return b })},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record{Period: 99}
			if err := r.UnmarshalBinary(tt.in); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("UnmarshalBinary = %v, want ErrInvalidRecord", err)
			}
			if r.Period != 99 {
				t.Fatalf("UnmarshalBinary changed the record on failure")
			}
		})
	}
}

func TestRecordMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Record)
	}{
		{"bad app", func(r *Record) { r.App = "" }},
		{"bad ledger", func(r *Record) { r.Ledger = "a/b" }},
		{"short wrapped DEK", func(r *Record) { r.WrappedDEK = r.WrappedDEK[:10] }},
		{"empty path", func(r *Record) { r.Fields[0].Path = "" }},
		{"short ciphertext", func(r *Record) { r.Fields[0].Ciphertext = nil }},
		{"too many fields", func(r *Record) { r.Fields = make([]SealedField, MaxFields+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _ := mustSeal(t, testKey(t), testHeader(), testFields(1, 4))
			tt.edit(rec)
			if b, err := rec.MarshalBinary(); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("MarshalBinary = (%d bytes, %v), want ErrInvalidRecord", len(b), err)
			}
		})
	}
}
