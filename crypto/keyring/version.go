package keyring

import "fmt"

// Key versions.
//
// The int64 that an envelope record carries as Period, and that WrappedKey.Period, the KeyStore,
// the cache and the KMS encryption context use, is a key version: the period index in its low
// VersionPeriodBits bits (two's complement) and the rotation number, the generation, above them:
//
//	version = generation<<40 + period    period in [-2^39, 2^39), generation in [0, MaxGeneration]
//
// Generation 0 is the key the 24 h schedule creates; its version equals the period index, so
// records and key files written before keys could be rotated keep their meaning. Rotate adds a
// generation within the current period. Every generation of a period shares the period's
// DestroyAt: it can only have sealed data of that period.
const (
	VersionPeriodBits = 40
	MaxGeneration     = 1<<(63-VersionPeriodBits-1) - 1
)

const periodMask = 1<<VersionPeriodBits - 1

// KeyVersion returns the version of generation gen of period p. It panics if p or gen is out of
// range: both come from the clock and the key store, never from input.
func KeyVersion(p int64, gen int) int64 {
	if gen < 0 || gen > MaxGeneration || p < -1<<(VersionPeriodBits-1) || p >= 1<<(VersionPeriodBits-1) {
		panic(fmt.Sprintf("keyring: key version out of range: period %d generation %d", p, gen))
	}
	return int64(gen)<<VersionPeriodBits + p
}

// SplitVersion returns the period and the generation of a key version.
func SplitVersion(v int64) (period int64, gen int) {
	period = v & periodMask
	if period >= 1<<(VersionPeriodBits-1) {
		period -= 1 << VersionPeriodBits // sign-extend the low bits
	}
	return period, int((v - period) >> VersionPeriodBits)
}

// PeriodOfVersion returns the period of a key version.
func PeriodOfVersion(v int64) int64 {
	p, _ := SplitVersion(v)
	return p
}
