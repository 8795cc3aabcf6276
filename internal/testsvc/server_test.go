package testsvc

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServerWaitReady: the three ways a start fails (the process exits, a foreign server answers,
// nothing answers in time) each give their error, and the process is gone afterwards.
func TestServerWaitReady(t *testing.T) {
	never := func() (bool, error) { return false, nil }
	foreign := errors.New("port answered by a server other than ours")
	for _, tt := range []struct {
		name  string
		args  []string
		ready func() (bool, error)
		want  string
	}{
		{"exits", []string{"sh", "-c", "echo no config >&2; exit 3"}, never, "sh exited: no config"},
		{"foreign", []string{"sleep", "60"}, func() (bool, error) { return false, foreign }, foreign.Error()},
		{"timeout", []string{"sleep", "60"}, never, "sleep not answering after 200ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := startServer(tt.args[0], exec.Command(tt.args[0], tt.args[1:]...))
			if err != nil {
				t.Fatal(err)
			}
			err = s.waitReady(200*time.Millisecond, 10*time.Millisecond, "answering", tt.ready)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("waitReady = %v, want an error containing %q", err, tt.want)
			}
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				t.Fatal("process still running after waitReady failed")
			}
		})
	}
}
