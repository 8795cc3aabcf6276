package testenv

import "testing"

// TestSkipAllocCounts: under -race (how make test runs) the test is skipped, in a plain build it
// goes on; each build checks its own half.
func TestSkipAllocCounts(t *testing.T) {
	skipped := true
	t.Run("probe", func(t *testing.T) {
		SkipAllocCounts(t)
		skipped = false
	})
	if want := RaceEnabled || testing.CoverMode() != ""; skipped != want {
		t.Errorf("skipped = %v, want %v (race %v, cover mode %q)", skipped, want, RaceEnabled, testing.CoverMode())
	}
}
