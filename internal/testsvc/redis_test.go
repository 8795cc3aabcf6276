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

// A restartable server answers, stops answering when killed, and answers again on the same
// address after Restart.
func TestRedisServerRestart(t *testing.T) {
	r := StartRedisServer(t)
	addr := r.Addr()
	if err := ping(addr); err != nil {
		t.Fatalf("ping(%s) = %v, want nil", addr, err)
	}
	r.Kill()
	if err := ping(addr); err == nil {
		t.Fatalf("ping(%s) after Kill = nil, want an error", addr)
	}
	r.Restart()
	if got := r.Addr(); got != addr {
		t.Fatalf("Addr() after Restart = %s, want %s", got, addr)
	}
	if err := ping(addr); err != nil {
		t.Fatalf("ping(%s) after Restart = %v, want nil", addr, err)
	}
}
