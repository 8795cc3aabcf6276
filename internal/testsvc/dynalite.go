package testsvc

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DynaliteVersion is the npm version of dynalite the tests run against; scripts/test-deps.sh
// installs the same one.
const DynaliteVersion = "4.0.0"

// Dynalite starts dynalite, a DynamoDB-compatible server, in memory on a free loopback port and
// returns its endpoint URL (http://127.0.0.1:PORT). Tables become ACTIVE at once. The server is
// stopped when tb ends.
//
// dynalite is taken from PATH, else from <repo>/.cache/npm, where it is installed with npm if
// missing. If it cannot be found, installed or started, tb fails when CI is set and is skipped
// otherwise. dynalite implements neither TTL deletion nor UpdateTimeToLive.
func Dynalite(tb testing.TB) string {
	tb.Helper()
	bin, err := dynaliteBin()
	if err != nil {
		unavailable(tb, "dynalite unavailable; run scripts/test-deps.sh to install it: %v", err)
	}
	endpoint, err := retryPorts(func() (string, error) { return startDynalite(tb, bin) })
	if err != nil {
		unavailable(tb, "dynalite unavailable; run scripts/test-deps.sh to install it: %v", err)
	}
	return endpoint
}

var dynaliteOnce = sync.OnceValues(findOrInstallDynalite)

func dynaliteBin() (string, error) { return dynaliteOnce() }

func findOrInstallDynalite() (string, error) {
	if p, err := exec.LookPath("dynalite"); err == nil {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	prefix := filepath.Join(root, ".cache", "npm")
	bin := filepath.Join(prefix, "node_modules", ".bin", "dynalite")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("dynalite not on PATH nor in %s, and npm not found to install it: %w", prefix, err)
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return "", fmt.Errorf("installing dynalite: %w", err)
	}
	// Test binaries of several packages may run at once: one installs while the others wait.
	lock, err := os.OpenFile(filepath.Join(prefix, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("installing dynalite: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("installing dynalite: locking: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command(npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--silent", "dynalite@"+DynaliteVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install dynalite@%s: %w: %s", DynaliteVersion, err, lastLines(string(out), 5))
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("npm install dynalite@%s left no %s: %w", DynaliteVersion, bin, err)
	}
	return bin, nil
}

// repoRoot finds the directory holding go.mod, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

func startDynalite(tb testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	s, err := startServer("dynalite", exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--host", "127.0.0.1",
		"--createTableMs", "0",
		"--deleteTableMs", "0",
		"--updateTableMs", "0",
	))
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: time.Second}
	if err := s.waitReady(15*time.Second, 50*time.Millisecond, "answering on "+endpoint, func() (bool, error) {
		resp, err := client.Get(endpoint + "/")
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// Any answer with a DynamoDB request id will do; one without may be another server that
		// took the port first.
		if resp.Header.Get("X-Amzn-Requestid") == "" {
			return false, fmt.Errorf("port %d answered by a server other than dynalite", port)
		}
		return true, nil
	}); err != nil {
		return "", err
	}
	tb.Cleanup(s.stop)
	return endpoint, nil
}
