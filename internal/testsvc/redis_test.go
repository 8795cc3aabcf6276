package testsvc

import "testing"

func TestRedis(t *testing.T) {
	addr := Redis(t)
	if err := ping(addr); err != nil {
		t.Fatalf("ping(%s) = %v, want nil", addr, err)
	}
	// Two servers in one test get distinct ports.
	if other := Redis(t); other == addr {
		t.Fatalf("Redis() twice = %s both times, want distinct addresses", addr)
	}
}
