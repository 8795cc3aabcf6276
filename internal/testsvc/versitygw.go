package testsvc

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// VersityGWVersion is the versitygw release scripts/test-deps.sh installs.
const VersityGWVersion = "v1.8.0"

// S3Server is a running S3-compatible server.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:port
	Region    string
	AccessKey string
	SecretKey string
	Dir       string // root directory of the posix backend: one subdirectory per bucket
}

// VersityGW starts versitygw in posix mode on a fresh temporary directory, bound to 127.0.0.1 on
// a free port, with one root user, and returns it once it answers its health endpoint. It checks
// SigV4 signatures and presigned-URL expiry like S3 does. The server is stopped when tb ends.
func VersityGW(tb testing.TB) *S3Server {
	tb.Helper()
	bin := versityGWPath(tb)
	s, err := retryPorts(func() (*S3Server, error) { return startVersityGW(tb, bin) })
	if err == nil {
		return s
	}
	unavailable(tb, "versitygw does not start here: %v", err)
	return nil
}

// versityGWPath finds the binary on PATH or where `go install` puts it.
func versityGWPath(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) >= 1 && strings.TrimSpace(lines[0]) != "" {
			dirs = append(dirs, strings.TrimSpace(lines[0]))
		}
		if len(lines) >= 2 {
			for _, p := range filepath.SplitList(strings.TrimSpace(lines[1])) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	unavailable(tb, "versitygw not found on PATH or in GOBIN/GOPATH/bin; run scripts/test-deps.sh to install it")
	return ""
}

func startVersityGW(tb testing.TB, bin string) (*S3Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &S3Server{
		Endpoint:  "http://" + addr,
		Region:    "us-east-1",
		AccessKey: "veiltestaccess",
		SecretKey: "veiltestsecret0123456789",
		Dir:       tb.TempDir(),
	}
	cmd := exec.Command(bin,
		"--port", addr,
		"--region", s.Region,
		"--health", "/health",
		"--quiet",
		"posix", s.Dir,
	)
	// Credentials go through the environment, not argv, so they never show in a process list.
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+s.AccessKey,
		"ROOT_SECRET_ACCESS_KEY="+s.SecretKey,
	)
	srv, err := startServer("versitygw", cmd)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	if err := srv.waitReady(15*time.Second, 25*time.Millisecond, "healthy on "+addr, func() (bool, error) {
		resp, err := client.Get(s.Endpoint + "/health")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return nil, err
	}
	tb.Cleanup(srv.stop)
	return s, nil
}
