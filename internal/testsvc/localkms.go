package testsvc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// LocalKMSVersion is the version of github.com/nsmithuk/local-kms the tests run against;
// scripts/test-deps.sh installs the same one.
const LocalKMSVersion = "v0.0.0-20260228092603-2a5e92d09ab6"

// LocalKMS is a running local-kms, an AWS KMS emulator nobody on this project wrote, with two
// AES keys and an alias to each.
type LocalKMS struct {
	Endpoint string // http://127.0.0.1:PORT, the loopback proxy into its network namespace
	Region   string // the region its ARNs name (eu-west-1)
	KeyID    string // the key's id (a UUID)
	KeyARN   string // arn:aws:kms:<region>:<account>:key/<KeyID>, what real KMS answers as KeyId
	Alias    string // alias/veil-test, pointing at the key
	// A second key, for rewrapping: alias/veil-test-2.
	KeyID2, KeyARN2, Alias2 string

	pid   int
	mu    sync.Mutex
	calls map[string]int
}

// Calls returns how many requests for the KMS operation op (e.g. "GenerateDataKey") went through
// the proxy, read from their X-Amz-Target headers.
func (k *LocalKMS) Calls(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// targetCounter counts the X-Amz-Target headers of the requests written through it.
type targetCounter struct {
	k     *LocalKMS
	carry []byte
}

var targetHeader = []byte("X-Amz-Target: TrentService.")

func (w *targetCounter) Write(p []byte) (int, error) {
	buf := append(w.carry, p...)
	for {
		i := bytes.Index(buf, targetHeader)
		if i < 0 {
			break
		}
		rest := buf[i+len(targetHeader):]
		j := bytes.IndexByte(rest, '\r')
		if j < 0 {
			buf = buf[i:] // the header continues in the next write
			w.carry = append([]byte(nil), buf...)
			return len(p), nil
		}
		w.k.mu.Lock()
		w.k.calls[string(rest[:j])]++
		w.k.mu.Unlock()
		buf = rest[j:]
	}
	w.carry = append([]byte(nil), buf[max(0, len(buf)-len(targetHeader)):]...)
	return len(p), nil
}

const (
	localKMSRegion  = "eu-west-1"
	localKMSAccount = "111122223333"
	localKMSPort    = "8080"
)

// StartLocalKMS starts local-kms seeded with two AES keys (alias/veil-test, alias/veil-test-2) and
// returns it. It is stopped when tb ends.
//
// local-kms listens on every interface and has no option to bind one address. So it is never
// started in the host's network namespace: it runs under `unshare -n`, in a network namespace of
// its own that holds only a loopback interface (brought up with `ip link set lo up` before
// local-kms is exec'd), so nothing outside this machine, nor any other namespace, can reach it.
// The test reaches it through a TCP proxy on 127.0.0.1 in the host namespace: for each
// connection, a goroutine locks its OS thread, enters local-kms's namespace (setns on
// /proc/<pid>/ns/net), dials 127.0.0.1:8080 there and returns without unlocking, so that the
// Go runtime destroys that thread instead of reusing it in the wrong namespace. Creating a
// network namespace needs root (CAP_SYS_ADMIN): without it the test is skipped (failed under CI).
func StartLocalKMS(tb testing.TB) *LocalKMS {
	tb.Helper()
	bin := localKMSBin(tb)
	if os.Geteuid() != 0 {
		unavailable(tb, "local-kms unavailable: it runs in a network namespace of its own, which needs root")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tb, "local-kms unavailable: %s not found: local-kms runs under unshare -n with ip link set lo up", tool)
		}
	}
	dir := tb.TempDir()
	keyID, keyID2 := newUUID(), newUUID()
	backing, backing2 := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(backing)
	_, _ = rand.Read(backing2)
	seed := fmt.Sprintf(`Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: %s
        BackingKeys:
          - %s
      - Metadata:
          KeyId: %s
        BackingKeys:
          - %s
Aliases:
  - AliasName: alias/veil-test
    TargetKeyId: %s
  - AliasName: alias/veil-test-2
    TargetKeyId: %s
`, keyID, hex.EncodeToString(backing), keyID2, hex.EncodeToString(backing2), keyID, keyID2)
	seedPath := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedPath, []byte(seed), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("unshare", "-n", "--", "sh", "-c", `ip link set lo up && exec "$0"`, bin)
	cmd.Env = append(os.Environ(),
		"PORT="+localKMSPort, "KMS_REGION="+localKMSRegion, "KMS_ACCOUNT_ID="+localKMSAccount,
		"KMS_SEED_PATH="+seedPath, "KMS_DATA_PATH="+filepath.Join(dir, "data"))
	srv, err := startServer("local-kms", cmd)
	if err != nil {
		unavailable(tb, "local-kms unavailable: starting local-kms under unshare -n: %v", err)
	}
	k := &LocalKMS{
		Region: localKMSRegion, KeyID: keyID, Alias: "alias/veil-test",
		KeyARN: "arn:aws:kms:" + localKMSRegion + ":" + localKMSAccount + ":key/" + keyID,
		KeyID2: keyID2, Alias2: "alias/veil-test-2",
		KeyARN2: "arn:aws:kms:" + localKMSRegion + ":" + localKMSAccount + ":key/" + keyID2,
		pid:     cmd.Process.Pid, // unshare and sh exec: the same process becomes local-kms
		calls:   map[string]int{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.stop()
		tb.Fatal(err)
	}
	k.Endpoint = "http://" + ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() { k.proxy(ln) })
	tb.Cleanup(func() {
		ln.Close()
		srv.stop()
		wg.Wait()
	})
	if err := srv.waitReady(20*time.Second, 50*time.Millisecond, "answering", func() (bool, error) {
		return k.ping() == nil, nil
	}); err != nil {
		tb.Fatal(err)
	}
	return k
}

func localKMSBin(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("local-kms"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("GOPATH"), "bin"), filepath.Join(home, "go", "bin")} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(p, "local-kms")); err == nil && !fi.IsDir() {
			return filepath.Join(p, "local-kms")
		}
	}
	unavailable(tb, "local-kms unavailable: local-kms not found on PATH nor in the Go bin directory; run scripts/test-deps.sh")
	return ""
}

// ping asks for the seeded alias through the proxy.
func (k *LocalKMS) ping() error {
	req, _ := http.NewRequest(http.MethodPost, k.Endpoint, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.ListAliases")
	c := http.Client{Timeout: time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "alias/veil-test") {
		return fmt.Errorf("ListAliases = %d %s", resp.StatusCode, b)
	}
	return nil
}

func (k *LocalKMS) proxy(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			up, err := k.dialInside()
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(up, io.TeeReader(c, &targetCounter{k: k}))
				up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			<-done
		})
	}
}

// dialInside connects to local-kms from inside its network namespace.
func (k *LocalKMS) dialInside() (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread is in another namespace now, and a goroutine that exits
		// locked makes the runtime destroy its thread.
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", k.pid))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("entering local-kms's network namespace: %w", err)}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+localKMSPort)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	return r.c, nil
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
