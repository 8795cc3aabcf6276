package keyring

// CachedKEK returns the cache's own buffer of the raw KEK of (app, period), so tests can watch it
// being zeroed.
func (k *Keyring) CachedKEK(app string, period int64) ([]byte, bool) {
	e, ok := k.cache.Peek(cacheKey{app, period})
	if !ok {
		return nil, false
	}
	return e.raw.b, true
}
