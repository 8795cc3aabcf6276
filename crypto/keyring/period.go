package keyring

import "time"

// PeriodLength is the rotation period of app KEKs.
const PeriodLength = 24 * time.Hour

const periodSeconds = int64(PeriodLength / time.Second)

// PeriodOf returns the index of the period containing t: unix seconds / 86400, rounded down.
func PeriodOf(t time.Time) int64 {
	s := t.Unix()
	p := s / periodSeconds
	if s < 0 && s%periodSeconds != 0 {
		p--
	}
	return p
}

// PeriodStart returns the first instant of period p.
func PeriodStart(p int64) time.Time {
	return time.Unix(p*periodSeconds, 0).UTC()
}

// PeriodEnd returns the first instant after period p.
func PeriodEnd(p int64) time.Time {
	return PeriodStart(p + 1)
}
