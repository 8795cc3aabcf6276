package testsvc

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestLocalKMSOnlyOnItsLoopback: local-kms answers through the proxy, and nothing listens on its
// port in the host's namespace (it binds every interface of its own namespace only).
func TestLocalKMSOnlyOnItsLoopback(t *testing.T) {
	k := StartLocalKMS(t)
	before := k.Calls("ListAliases")
	if err := k.ping(); err != nil {
		t.Fatalf("local-kms through the proxy: %v", err)
	}
	if got := k.Calls("ListAliases") - before; got != 1 {
		t.Errorf("Calls(ListAliases) grew by %d for one request, want 1", got)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+localKMSPort); err == nil {
		c.Close()
		// Something else may use 8080 on this host; make sure it is not local-kms.
		out, _ := exec.Command("ss", "-ltnp").CombinedOutput()
		if strings.Contains(string(out), "local-kms") {
			t.Errorf("local-kms listens in the host namespace:\n%s", out)
		}
	}
	out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(k.pid)+"/ns/net", "ip", "-o", "addr").CombinedOutput()
	if err != nil {
		t.Fatalf("listing local-kms's interfaces: %v %s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(line, " lo ") {
			t.Errorf("local-kms's namespace has an interface besides loopback: %s", line)
		}
	}
}
