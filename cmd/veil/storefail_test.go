package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/testsvc"
	"github.com/veil-project/veil/sinks/store/badgerstore"
)

// TestStoreUnavailableExitsRefused runs the real binary (`veil run` and `veil serve`) against a
// store that cannot be opened: a Redis address nobody listens on, and an embedded store whose
// directory another process holds. Each must print the cause and exit 4 (refused), never panic.
func TestStoreUnavailableExitsRefused(t *testing.T) {
	bin := buildVeil(t)
	addrs := externalBroker(t)

	// A loopback port that was free a moment ago: nothing answers there.
	deadRedis := testsvc.FreeAddr(t)

	held := t.TempDir()
	st, err := badgerstore.Open(filepath.Join(held, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())

	cases := []struct {
		name, store, dataDir, cause string
	}{
		{"unreachable redis", fmt.Sprintf("store:\n  kind: redis\n  redis: {addr: %q}\n", deadRedis), t.TempDir(), "opening Redis store"},
		{"badger dir held", "", held, "opening embedded store"},
	}
	for _, c := range cases {
		for _, cmd := range []string{"run", "serve"} {
			t.Run(c.name+"/"+cmd, func(t *testing.T) {
				dir := t.TempDir()
				yaml := fmt.Sprintf("kafka:\n  brokers: [%s]\ndata_dir: %s\napps: {app-1: {}}\nlisten: {metrics: \"\", api: %q}\ndev: {plain_http: true}\n%s",
					addrs[0], c.dataDir, testsvc.FreeAddr(t), c.store)
				path := writeConfig(t, dir, yaml)
				var out bytes.Buffer
				p := exec.Command(bin, cmd, "-config", path)
				p.Stdout, p.Stderr = &out, &out
				err := p.Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("veil %s with %s: %v, want exit %d\n%s", cmd, c.name, err, exitRefused, out.String())
				}
				if code := ee.ExitCode(); code != exitRefused {
					t.Errorf("veil %s with %s exited %d, want %d\n%s", cmd, c.name, code, exitRefused, out.String())
				}
				if s := out.String(); strings.Contains(s, "panic") || !strings.Contains(s, c.cause) {
					t.Errorf("veil %s with %s: output lacks %q or panics:\n%s", cmd, c.name, c.cause, s)
				}
			})
		}
	}
}
