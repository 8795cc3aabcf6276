package reveal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/veil-project/veil/internal/atomicfile"
	"github.com/veil-project/veil/names"
	"github.com/veil-project/veil/sinks/store"
)

// Kind is what a principal is, and so whether it may decrypt.
type Kind string

const (
	KindMessaging Kind = "messaging" // a messaging integration: always decrypts
	KindSupport   Kind = "support"   // a customer-support integration: always decrypts
	KindOther     Kind = "other"     // any other integration: decrypts only with Override
	KindAdmin     Kind = "admin"     // an authorized developer: views until the TTL
)

// Decrypts is the one rule of who may see plaintext, for reveal principals and egress
// integrations alike: messaging, support and admin always, other only with override, any other
// kind never (fail closed). Which apps a caller covers is checked apart (MayDecrypt,
// egress's app filter).
func (k Kind) Decrypts(override bool) bool {
	switch k {
	case KindMessaging, KindSupport, KindAdmin:
		return true
	case KindOther:
		return override
	}
	return false
}

// AllApps in a principal's Apps grants every app. Only an admin may hold it.
const AllApps = "*"

// Principal is one caller of the reveal API. The file holds only the SHA-256 of its API key.
type Principal struct {
	Name      string   `yaml:"name" json:"name"`
	Kind      Kind     `yaml:"kind" json:"kind"`
	Override  bool     `yaml:"override,omitempty" json:"override,omitempty"`
	Apps      []string `yaml:"apps" json:"apps"`
	KeySHA256 string   `yaml:"key_sha256" json:"-"`
}

// MayDecrypt reports whether p may see the plaintext of a token of app: messaging and support
// always, other only with Override, admin always; and only for an app in p.Apps.
func (p *Principal) MayDecrypt(app string) bool {
	if !p.Kind.Decrypts(p.Override) {
		return false
	}
	for _, a := range p.Apps {
		if a == app || (a == AllApps && p.Kind == KindAdmin) {
			return true
		}
	}
	return false
}

// validate checks p as it is stored, naming the field at fault.
func (p *Principal) validate() error {
	if !validName(p.Name) {
		return fmt.Errorf("principal %q: name must be 1-64 letters, digits, '-', '_' or '.', starting and ending with a letter, digit or '_'", p.Name)
	}
	switch p.Kind {
	case KindMessaging, KindSupport, KindOther, KindAdmin:
	default:
		return fmt.Errorf("principal %q: kind must be messaging, support, other or admin", p.Name)
	}
	if p.Override && p.Kind != KindOther {
		return fmt.Errorf("principal %q: override applies to kind other only", p.Name)
	}
	if len(p.Apps) == 0 {
		return fmt.Errorf("principal %q: apps must list at least one app", p.Name)
	}
	for _, a := range p.Apps {
		if a == AllApps {
			if p.Kind != KindAdmin {
				return fmt.Errorf("principal %q: apps %q is allowed for kind admin only", p.Name, AllApps)
			}
			continue
		}
		if err := store.ValidateApp(a); err != nil {
			return fmt.Errorf("principal %q: apps: %w", p.Name, err)
		}
	}
	if h, err := hex.DecodeString(p.KeySHA256); err != nil || len(h) != sha256.Size {
		return fmt.Errorf("principal %q: key_sha256 must be 64 hex digits", p.Name)
	}
	return nil
}

// validName is the one name rule (package names), for principal names as for app ids.
func validName(s string) bool { return names.Valid(s) }

// APIKey is a principal's secret. String, GoString and LogValue redact it.
type APIKey string

// APIKeyPrefix starts every generated key.
const APIKeyPrefix = "vk_"

// maxKeyLen bounds what Lookup hashes; generated keys are 46 bytes.
const maxKeyLen = 256

func (APIKey) String() string                 { return "[redacted]" }
func (APIKey) GoString() string               { return "reveal.APIKey([redacted])" }
func (APIKey) LogValue() slog.Value           { return slog.StringValue("[redacted]") }
func (k APIKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// NewAPIKey returns a fresh key: APIKeyPrefix and 32 random bytes in unpadded base64url.
func NewAPIKey() (APIKey, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating API key: %w", err)
	}
	k := APIKey(APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:]))
	clear(b[:])
	return k, nil
}

// HashKey returns the hex SHA-256 of key, the form a principals file stores.
func HashKey(key APIKey) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Principals is a validated set of principals, looked up by API key. It is immutable.
type Principals struct {
	list   []Principal
	byHash map[[sha256.Size]byte]*Principal
}

// NewPrincipals validates ps: names unique, kinds known, apps valid, key hashes well-formed and
// unique.
func NewPrincipals(ps []Principal) (*Principals, error) {
	out := &Principals{byHash: make(map[[sha256.Size]byte]*Principal, len(ps))}
	names := make(map[string]bool, len(ps))
	out.list = slices.Clone(ps)
	for i := range out.list {
		p := &out.list[i]
		p.Apps = slices.Clone(p.Apps)
		if err := p.validate(); err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, fmt.Errorf("principal %q: listed twice", p.Name)
		}
		names[p.Name] = true
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(p.KeySHA256)) // validated above
		if _, dup := out.byHash[h]; dup {
			return nil, fmt.Errorf("principal %q: key_sha256 shared with another principal", p.Name)
		}
		out.byHash[h] = p
	}
	return out, nil
}

// Lookup returns the principal whose key is key. The key is hashed first and the map is keyed by
// that hash, so the lookup's timing depends only on the hash of a high-entropy secret, never on
// how much of a stored key a guess shares; the final comparison is constant-time as well.
func (ps *Principals) Lookup(key APIKey) (Principal, bool) {
	if ps == nil || len(key) == 0 || len(key) > maxKeyLen {
		return Principal{}, false
	}
	h := sha256.Sum256([]byte(key))
	p, ok := ps.byHash[h]
	if !ok {
		return Principal{}, false
	}
	var want [sha256.Size]byte
	hex.Decode(want[:], []byte(p.KeySHA256))
	if subtle.ConstantTimeCompare(h[:], want[:]) != 1 {
		return Principal{}, false
	}
	return *p, true
}

// List returns the principals in file order.
func (ps *Principals) List() []Principal {
	if ps == nil {
		return nil
	}
	out := slices.Clone(ps.list)
	for i := range out {
		out[i].Apps = slices.Clone(out[i].Apps)
	}
	return out
}

// principalsFile is the YAML layout of a principals file.
type principalsFile struct {
	Principals []Principal `yaml:"principals"`
}

// ReadPrincipals reads and validates a principals file. A missing file is an empty set.
func ReadPrincipals(path string) (*Principals, error) {
	ps, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return NewPrincipals(ps)
}

func readFile(path string) ([]Principal, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading principals file: %w", err)
	}
	var f principalsFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing principals file %s: %w", path, err)
	}
	return f.Principals, nil
}

// writeFile replaces the file atomically (temp file, fsync, rename) with mode 0600.
func writeFile(path string, ps []Principal) error {
	b, err := yaml.Marshal(principalsFile{Principals: ps})
	if err != nil {
		return fmt.Errorf("encoding principals file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating principals directory: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing principals file: %w", err)
	}
	return nil
}

// AddPrincipal generates a key for p, stores p with the key's hash in the file at path (created
// with mode 0600 if missing) and returns the key. The key is not kept anywhere: it is shown once.
// p.KeySHA256 is ignored.
func AddPrincipal(path string, p Principal) (APIKey, error) {
	ps, err := readFile(path)
	if err != nil {
		return "", err
	}
	for _, q := range ps {
		if q.Name == p.Name {
			return "", fmt.Errorf("principal %q already exists", p.Name)
		}
	}
	key, err := NewAPIKey()
	if err != nil {
		return "", err
	}
	p.KeySHA256 = HashKey(key)
	ps = append(ps, p)
	if _, err := NewPrincipals(ps); err != nil {
		return "", err
	}
	if err := writeFile(path, ps); err != nil {
		return "", err
	}
	return key, nil
}

// ErrNoPrincipal is returned by RemovePrincipal when no principal has the name.
var ErrNoPrincipal = errors.New("no such principal")

// RemovePrincipal deletes the principal called name from the file at path; its key stops working
// at the next reload.
func RemovePrincipal(path, name string) error {
	ps, err := readFile(path)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ps, func(p Principal) bool { return p.Name == name })
	if i < 0 {
		return fmt.Errorf("removing principal %q: %w", name, ErrNoPrincipal)
	}
	return writeFile(path, slices.Delete(ps, i, i+1))
}

// PrincipalsFile serves the principals of a file and re-reads it when it changes (checked at most
// once per interval), so `veil principals add/remove` takes effect without a restart.
//
// An edited file that does not parse or validate fails closed: the last good set is NOT kept
// (that would keep a principal the edit meant to revoke). What stays in force is only what the
// edit provably did not revoke: the principals that appear, valid and unchanged (name, kind,
// override, apps, key hash), both in the last good set and in the new file; if the file is not
// even YAML, none. The failure is reported through onError and by Status until a good file is
// read.
type PrincipalsFile struct {
	path     string
	interval time.Duration
	onError  func(error)

	cur  atomic.Pointer[Principals]
	next atomic.Int64 // UnixNano of the next check

	mu      sync.Mutex // serializes checks
	modTime time.Time
	size    int64
	status  atomic.Pointer[error] // why the current set is degraded; nil when the file is good
}

// Status returns nil when the current set is the file's, and otherwise the error that made
// PrincipalsFile fall back to the principals the broken file provably kept (see PrincipalsFile).
func (f *PrincipalsFile) Status() error {
	if e := f.status.Load(); e != nil {
		return *e
	}
	return nil
}

// OpenPrincipalsFile reads path (a missing file is an empty set: every key is refused until a
// principal is added) and returns a PrincipalsFile that re-checks it every interval (default 1s).
// onError may be nil.
func OpenPrincipalsFile(path string, interval time.Duration, onError func(error)) (*PrincipalsFile, error) {
	if interval <= 0 {
		interval = time.Second
	}
	f := &PrincipalsFile{path: path, interval: interval, onError: onError, size: -1}
	fi, _ := os.Stat(path)
	ps, err := ReadPrincipals(path)
	if err != nil {
		return nil, err
	}
	f.cur.Store(ps)
	f.next.Store(time.Now().Add(interval).UnixNano())
	if fi != nil {
		if fi.Mode().Perm()&0o077 != 0 && onError != nil {
			onError(fmt.Errorf("principals file %s is readable by others (mode %v); use 0600", path, fi.Mode().Perm()))
		}
		f.modTime, f.size = fi.ModTime(), fi.Size()
	}
	return f, nil
}

// Lookup is Principals.Lookup on the current set.
func (f *PrincipalsFile) Lookup(key APIKey) (Principal, bool) {
	return f.Current().Lookup(key)
}

// Current returns the current set, re-reading the file if it changed. Between checks it takes no
// lock.
func (f *PrincipalsFile) Current() *Principals {
	now := time.Now()
	if now.UnixNano() < f.next.Load() || !f.mu.TryLock() {
		return f.cur.Load()
	}
	defer f.mu.Unlock()
	f.next.Store(now.Add(f.interval).UnixNano())
	fi, err := os.Stat(f.path)
	var mt time.Time
	var size int64 = -1
	if err == nil {
		mt, size = fi.ModTime(), fi.Size()
	}
	if mt.Equal(f.modTime) && size == f.size {
		return f.cur.Load()
	}
	f.modTime, f.size = mt, size // a broken file is reported once per change
	ps, err := ReadPrincipals(f.path)
	if err != nil {
		kept := survivors(f.cur.Load(), f.path)
		err = fmt.Errorf("%w; failing closed: %d principal(s) unchanged in the file still work, every other key is refused until the file is fixed", err, len(kept.list))
		f.cur.Store(kept)
		f.status.Store(&err)
		if f.onError != nil {
			f.onError(err)
		}
		return kept
	}
	f.cur.Store(ps)
	f.status.Store(nil)
	return ps
}

// survivors returns the principals of old that the file at path still lists, valid and unchanged,
// each name once; none if the file is not YAML.
func survivors(old *Principals, path string) *Principals {
	empty := &Principals{byHash: map[[sha256.Size]byte]*Principal{}}
	listed, err := readFile(path)
	if err != nil || old == nil {
		return empty
	}
	seen := make(map[string]int, len(listed))
	for _, p := range listed {
		seen[p.Name]++
	}
	var keep []Principal
	for _, p := range listed {
		if seen[p.Name] != 1 || p.validate() != nil {
			continue
		}
		i := slices.IndexFunc(old.list, func(q Principal) bool { return q.Name == p.Name })
		if i < 0 {
			continue
		}
		q := old.list[i]
		if q.Kind != p.Kind || q.Override != p.Override || q.KeySHA256 != p.KeySHA256 || !slices.Equal(q.Apps, p.Apps) {
			continue
		}
		keep = append(keep, q)
	}
	ps, err := NewPrincipals(keep)
	if err != nil {
		return empty
	}
	return ps
}
