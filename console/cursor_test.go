package console_test

import (
	"strings"
	"testing"

	"github.com/veil-project/veil/console"
	"github.com/veil-project/veil/ledgers"
)

// TestParseCursor: a cursor of every ledger round-trips; a cursor naming no ledger of the table
// (unknown, odd case, too long, path-like), or with a negative or missing number, is refused.
func TestParseCursor(t *testing.T) {
	for _, l := range ledgers.All() {
		c := console.Cursor{TS: 1764700000000, Ledger: l.Name, Partition: 2, Offset: 41}
		if got, ok := console.ParseCursor(c.String()); !ok || got != c {
			t.Errorf("ParseCursor(%q) = %+v, %v, want %+v", c.String(), got, ok, c)
		}
	}
	for _, s := range []string{
		"", "1.event.0", "1.event.0.0.0", "1..0.0", "-1.event.0.0", "1.event.-1.0", "1.event.0.-1",
		"x.event.0.0", "1.EVENT.0.0", "1.nosuch.0.0", "1.-event.0.0", "1." + strings.Repeat("e", 65) + ".0.0",
		"1.ev/../x.0.0", "1.event.2147483648.0",
	} {
		if c, ok := console.ParseCursor(s); ok {
			t.Errorf("ParseCursor(%q) = %+v, true, want refused", s, c)
		}
	}
}
