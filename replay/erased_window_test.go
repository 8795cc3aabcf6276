package replay_test

import (
	"testing"
	"time"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/replay"
)

// TestErasedAppsWindowKeys: with key windows (keys.window, on by default) an erased app's
// tombstones are window keys, whose period is the negated end minute; the erasure horizon is the
// latest erased window's end, not 1970 (which would let replay seal erased data again).
func TestErasedAppsWindowKeys(t *testing.T) {
	end := time.Date(2026, 12, 3, 18, 15, 0, 0, time.UTC)
	keys := []keyring.KeyInfo{
		{App: "app-2", Version: -end.Unix() / 60, Period: -end.Unix() / 60, WindowEnd: end, State: keyring.StateErased},
		{App: "app-2", Version: -end.Unix()/60 + 15, Period: -end.Unix()/60 + 15, WindowEnd: end.Add(-15 * time.Minute), State: keyring.StateErased},
		{App: "app-1", Version: -end.Unix() / 60, Period: -end.Unix() / 60, WindowEnd: end, State: keyring.StateActive},
	}
	got := replay.ErasedApps(keys)
	if len(got) != 1 || !got["app-2"].Equal(end) {
		t.Errorf("ErasedApps = %v, want app-2 until %v", got, end)
	}
}
