package keyring

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestSecretRedacts(t *testing.T) {
	s := &secret{b: []byte("0123456789abcdef0123456789abcdef")}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("k", "secret", s)
	for _, got := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%+v %#v %x %s %q", s, s, s, s, s), logged.String()} {
		if strings.Contains(got, "0123") || strings.Contains(got, "30313233") || !strings.Contains(got, redacted) {
			t.Errorf("secret printed as %q, want only %q", got, redacted)
		}
	}
	s.zero()
	if !bytes.Equal(s.b, make([]byte, 32)) {
		t.Errorf("zero() left %d nonzero bytes", len(bytes.Trim(s.b, "\x00")))
	}
}

func TestPeriodOf(t *testing.T) {
	tests := []struct {
		unix int64
		want int64
	}{
		{0, 0},
		{86399, 0},
		{86400, 1},
		{-1, -1},
		{-86400, -1},
		{-86401, -2},
		{1795341600, 20779}, // 2026-11-22T10:00:00Z
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.unix), func(t *testing.T) {
			tm := unix(tt.unix)
			if got := PeriodOf(tm); got != tt.want {
				t.Errorf("PeriodOf(%d) = %d, want %d", tt.unix, got, tt.want)
			}
			if p := PeriodOf(tm); PeriodStart(p).After(tm) || !PeriodEnd(p).After(tm) {
				t.Errorf("period %d = [%v, %v) does not contain %v", p, PeriodStart(p), PeriodEnd(p), tm)
			}
		})
	}
}

func unix(s int64) time.Time { return time.Unix(s, 0).UTC() }
