package replay

import "testing"

func TestETA(t *testing.T) {
	tests := []struct {
		name string
		left int64
		rate float64
		want string
	}{
		{"done", 0, 10, "0s"},
		{"overshoot", -3, 10, "0s"},
		{"rate unknown", 5, 0, "-"},
		// Half a second left: not 0s while records remain (was 0s: the fraction was cut before
		// the multiplication by a second).
		{"under a second", 1, 2, "1s"},
		{"one and a half", 3, 2, "2s"},
		{"minutes", 6000, 50, "2m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eta(tt.left, tt.rate); got != tt.want {
				t.Errorf("eta(%d, %v) = %s, want %s", tt.left, tt.rate, got, tt.want)
			}
		})
	}
}
