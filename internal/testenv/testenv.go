// Package testenv says what the test binary was built with, for tests whose results depend on
// it: allocation counts are those of a plain build only, not under the race detector or
// coverage. It imports nothing of veil's, so internal test packages can use it. Tests only.
package testenv

import "testing"

// SkipAllocCounts skips tb when the binary runs under the race detector or with coverage, where
// allocation counts differ from a plain build: a test that pins an allocation budget calls it
// first.
func SkipAllocCounts(tb testing.TB) {
	tb.Helper()
	if RaceEnabled || testing.CoverMode() != "" {
		tb.Skip("allocation counts differ under the race detector and coverage")
	}
}
