package analytics

import (
	"errors"
	"testing"
	"time"

	"github.com/veil-project/veil/schemas"
)

func TestFileNameRoundTrip(t *testing.T) {
	tests := []struct {
		partition   int32
		first, last int64
		want        string
	}{
		{0, 0, 0, "p0-o0-o0.parquet"},
		{3, 1200, 1399, "p3-o1200-o1399.parquet"},
		{2147483647, 9223372036854775806, 9223372036854775807, "p2147483647-o9223372036854775806-o9223372036854775807.parquet"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := fileName(tt.partition, tt.first, tt.last); got != tt.want {
				t.Fatalf("fileName(%d, %d, %d) = %s, want %s", tt.partition, tt.first, tt.last, got, tt.want)
			}
			p, f, l, ok := parseFileName("app=a/ledger=event/" + tt.want)
			if !ok || p != tt.partition || f != tt.first || l != tt.last {
				t.Fatalf("parseFileName(%s) = %d, %d, %d, %v, want %d, %d, %d, true", tt.want, p, f, l, ok, tt.partition, tt.first, tt.last)
			}
		})
	}
}

func TestParseFileNameRejects(t *testing.T) {
	for _, name := range []string{
		"", "p3-o1-o2", "p3-o1-o2.parquet.tmp", ".p3-o1-o2.parquet.tmp", "q3-o1-o2.parquet", "p3-o2-o1.parquet",
		"p-1-o1-o2.parquet", "p3-o-1-o2.parquet", "p03-o1-o2.parquet", "p3-o01-o2.parquet", "p3-o+1-o2.parquet",
		"p3-o1-o2-o3.parquet", "p3-o1.parquet", "p99999999999-o1-o2.parquet", "p3-o1-o2.PARQUET",
	} {
		t.Run(name, func(t *testing.T) {
			if p, f, l, ok := parseFileName(name); ok {
				t.Fatalf("parseFileName(%q) = %d, %d, %d, true, want false", name, p, f, l)
			}
		})
	}
}

func FuzzParseFileName(f *testing.F) {
	for _, s := range []string{"p3-o1200-o1399.parquet", "p0-o0-o0.parquet", "p3-o01-o2.parquet", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, first, last, ok := parseFileName(name)
		if !ok {
			return
		}
		if got := fileName(p, first, last); got != name {
			t.Fatalf("parseFileName(%q) accepted a non-canonical name (canonical %q)", name, got)
		}
		if first > last || p < 0 {
			t.Fatalf("parseFileName(%q) = %d, %d, %d: invalid range", name, p, first, last)
		}
	})
}

func TestKeyDir(t *testing.T) {
	tests := []struct {
		app, ledger string
		ts          time.Time
		want        string
	}{
		{"app-1", "event", time.Date(2026, 11, 22, 10, 59, 59, 999, time.UTC), "app=app-1/ledger=event/date=2026-11-22/hour=10"},
		{"a", "log", time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), "app=a/ledger=log/date=2026-11-22/hour=00"},
		// Event time in another zone is partitioned by its UTC hour (here the previous day).
		{"a", "log", time.Date(2026, 11, 22, 1, 30, 0, 0, time.FixedZone("CET", 3600*2)), "app=a/ledger=log/date=2026-11-21/hour=23"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := keyOf(tt.app, tt.ledger, tt.ts).Dir(); got != tt.want {
				t.Fatalf("keyOf(%s, %s, %v).Dir() = %s, want %s", tt.app, tt.ledger, tt.ts, got, tt.want)
			}
		})
	}
}

func TestRowOfRefusesTokens(t *testing.T) {
	const tok = "veil:v1:AAAA"
	tests := []struct {
		name  string
		entry schemas.Entry
		field string // "" when the row is accepted
	}{
		{"clean", schemas.Entry{ID: "e", Data: map[string]any{"text": "★★★★★"}}, ""},
		{"no data", schemas.Entry{ID: "e"}, ""},
		{"token in data", schemas.Entry{ID: "e", Data: map[string]any{"text": tok}}, "data"},
		{"token deep in data", schemas.Entry{ID: "e", Data: map[string]any{"a": map[string]any{"b": []any{1.0, tok}}}}, "data"}, // never a member name from data (schemas.ScanTokens)
		{"token as id", schemas.Entry{ID: tok}, "id"},
		{"token as thread id", schemas.Entry{ID: "e", Thread: schemas.Thread{ID: tok}}, "thread.id"},
		{"token as user id", schemas.Entry{ID: "e", User: schemas.User{ID: tok}}, "user.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := rowOf(&tt.entry)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("rowOf() = %v, want nil", err)
				}
				if tt.entry.Data == nil && row.Data != "{}" {
					t.Fatalf("rowOf().Data = %s, want {}", row.Data)
				}
				return
			}
			if !errors.Is(err, errTokenInRow) {
				t.Fatalf("rowOf() = %v, want errTokenInRow", err)
			}
			if got, want := err.Error(), "row holds a token in "+tt.field; got != want {
				t.Fatalf("rowOf() error = %q, want %q", got, want)
			}
		})
	}
}
