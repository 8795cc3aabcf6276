package reveal_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/reveal"
)

func TestPrincipalsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "principals.yaml")
	key, err := reveal.AddPrincipal(path, reveal.Principal{Name: "zendesk", Kind: reveal.KindSupport, Apps: []string{"app-1", "app-2"}})
	if err != nil {
		t.Fatalf("AddPrincipal: %v", err)
	}
	if !strings.HasPrefix(string(key), reveal.APIKeyPrefix) || len(key) != 46 {
		t.Errorf("key has form %q…, length %d; want %s + 43 base64url characters", key[:3], len(key), reveal.APIKeyPrefix)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("principals file mode = %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), string(key)) || strings.Contains(string(b), string(key[3:])) {
		t.Errorf("principals file holds the key")
	}
	if !strings.Contains(string(b), reveal.HashKey(key)) {
		t.Errorf("principals file does not hold the key's hash")
	}

	if _, err := reveal.AddPrincipal(path, reveal.Principal{Name: "zendesk", Kind: reveal.KindSupport, Apps: []string{"a"}}); err == nil {
		t.Errorf("AddPrincipal of an existing name succeeded")
	}
	adminKey := addPrincipal(t, path, "ops", reveal.KindAdmin, "*")

	ps, err := reveal.ReadPrincipals(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := ps.Lookup(key); !ok || p.Name != "zendesk" || p.Kind != reveal.KindSupport {
		t.Errorf("Lookup(key) = %+v, %v; want zendesk", p, ok)
	}
	if p, ok := ps.Lookup(adminKey); !ok || p.Name != "ops" {
		t.Errorf("Lookup(admin key) = %+v, %v; want ops", p, ok)
	}
	if _, ok := ps.Lookup(reveal.APIKey(reveal.HashKey(key))); ok {
		t.Errorf("Lookup(hash) succeeded, want only the key to work")
	}
	if got := len(ps.List()); got != 2 {
		t.Errorf("List() has %d principals, want 2", got)
	}

	if err := reveal.RemovePrincipal(path, "zendesk"); err != nil {
		t.Fatal(err)
	}
	if err := reveal.RemovePrincipal(path, "zendesk"); !errors.Is(err, reveal.ErrNoPrincipal) {
		t.Errorf("RemovePrincipal twice = %v, want ErrNoPrincipal", err)
	}
	ps, _ = reveal.ReadPrincipals(path)
	if _, ok := ps.Lookup(key); ok {
		t.Errorf("removed principal's key still works")
	}
}

func TestPrincipalValidation(t *testing.T) {
	h := reveal.HashKey("k")
	tests := []struct {
		name string
		p    reveal.Principal
		want string // part of the error; "" means valid
	}{
		{"valid", reveal.Principal{Name: "a", Kind: reveal.KindMessaging, Apps: []string{"app-1"}, KeySHA256: h}, ""},
		{"admin star", reveal.Principal{Name: "a", Kind: reveal.KindAdmin, Apps: []string{"*"}, KeySHA256: h}, ""},
		{"star for support", reveal.Principal{Name: "a", Kind: reveal.KindSupport, Apps: []string{"*"}, KeySHA256: h}, "admin only"},
		{"override for support", reveal.Principal{Name: "a", Kind: reveal.KindSupport, Override: true, Apps: []string{"x"}, KeySHA256: h}, "override"},
		{"unknown kind", reveal.Principal{Name: "a", Kind: "robot", Apps: []string{"x"}, KeySHA256: h}, "kind"},
		{"no apps", reveal.Principal{Name: "a", Kind: reveal.KindSupport, KeySHA256: h}, "apps"},
		{"bad app", reveal.Principal{Name: "a", Kind: reveal.KindSupport, Apps: []string{"a/b"}, KeySHA256: h}, "apps"},
		{"bad name", reveal.Principal{Name: "a b", Kind: reveal.KindSupport, Apps: []string{"x"}, KeySHA256: h}, "name"},
		{"short hash", reveal.Principal{Name: "a", Kind: reveal.KindSupport, Apps: []string{"x"}, KeySHA256: h[:10]}, "key_sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reveal.NewPrincipals([]reveal.Principal{tt.p})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("NewPrincipals = %v, want ok", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("NewPrincipals = %v, want error naming %q", err, tt.want)
			}
		})
	}
	t.Run("duplicate hash", func(t *testing.T) {
		_, err := reveal.NewPrincipals([]reveal.Principal{
			{Name: "a", Kind: reveal.KindSupport, Apps: []string{"x"}, KeySHA256: h},
			{Name: "b", Kind: reveal.KindSupport, Apps: []string{"x"}, KeySHA256: h},
		})
		if err == nil {
			t.Errorf("NewPrincipals with a shared hash succeeded")
		}
	})
}

func TestAPIKeyNeverPrints(t *testing.T) {
	k, _ := reveal.NewAPIKey()
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), fmt.Sprint(reveal.Client{Key: k})} {
		if strings.Contains(s, string(k)[3:]) {
			t.Errorf("formatting shows the key: %s", s)
		}
	}
}

// TestPrincipalsFileReload: a principal added to the file works without a restart.
func TestPrincipalsFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "principals.yaml")
	f, err := reveal.OpenPrincipalsFile(path, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := addPrincipal(t, path, "a", reveal.KindSupport, "x")
	time.Sleep(5 * time.Millisecond)
	if _, ok := f.Lookup(key); !ok {
		t.Fatalf("added principal not found after reload")
	}
}

// TestPrincipalsFileFailsClosed is the regression test of issue 12 item 6: an edit that removes a
// principal and leaves the file broken used to keep the last good set, the removed principal
// included. Now only principals the broken file still lists unchanged keep working, and the
// failure shows in Status until the file is fixed.
func TestPrincipalsFileFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "principals.yaml")
	var errs []error
	f, err := reveal.OpenPrincipalsFile(path, time.Millisecond, func(err error) { errs = append(errs, err) })
	if err != nil {
		t.Fatal(err)
	}
	keyA := addPrincipal(t, path, "a", reveal.KindSupport, "x")
	keyB := addPrincipal(t, path, "b", reveal.KindMessaging, "x")
	good, _ := os.ReadFile(path)
	ps, _ := reveal.ReadPrincipals(path)
	a := ps.List()[0]
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		f.Current()
	}
	works := func(key reveal.APIKey) bool { _, ok := f.Lookup(key); return ok }
	write(string(good))
	if !works(keyA) || !works(keyB) || f.Status() != nil {
		t.Fatalf("good file: a=%v b=%v status=%v, want both working and no error", works(keyA), works(keyB), f.Status())
	}

	// b removed, and the file left as broken YAML: nobody is provably still valid.
	write("principals:\n  - name: " + a.Name + "\n    kind: [\n")
	if works(keyA) || works(keyB) {
		t.Errorf("unparseable file: a=%v b=%v, want every key refused", works(keyA), works(keyB))
	}
	if f.Status() == nil || len(errs) == 0 {
		t.Errorf("unparseable file: Status = %v, %d errors reported, want the failure", f.Status(), len(errs))
	}

	// Back to good, then b removed and a third principal with an unknown kind: a (unchanged)
	// keeps working, b (removed) and c (invalid) do not.
	write(string(good))
	if !works(keyA) || !works(keyB) || f.Status() != nil {
		t.Fatalf("fixed file: a=%v b=%v status=%v", works(keyA), works(keyB), f.Status())
	}
	write(fmt.Sprintf("principals:\n  - {name: a, kind: support, apps: [x], key_sha256: %s}\n  - {name: c, kind: superuser, apps: [x], key_sha256: %s}\n",
		a.KeySHA256, strings.Repeat("0", 64)))
	if !works(keyA) || works(keyB) || f.Status() == nil {
		t.Errorf("invalid file without b: a=%v b=%v status=%v, want a only, and the failure", works(keyA), works(keyB), f.Status())
	}
	// An edit that changes a's apps in a broken file does not keep a either.
	write(fmt.Sprintf("principals:\n  - {name: a, kind: support, apps: [x, y], key_sha256: %s}\n  - {name: c, kind: superuser, apps: [x], key_sha256: %s}\n",
		a.KeySHA256, strings.Repeat("0", 64)))
	if works(keyA) {
		t.Errorf("broken file changing a's apps kept a")
	}
}
