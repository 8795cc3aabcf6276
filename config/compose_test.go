package config

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml the test reads. yaml.v3 resolves the anchors and
// merge keys (<<: *veil-service) the file uses.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       *composeBuild  `yaml:"build"`
	Hostname    string         `yaml:"hostname"`
	Command     []string       `yaml:"command"`
	Environment map[string]any `yaml:"environment"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	Restart     string         `yaml:"restart"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (s composeService) env() []string {
	var out []string
	for k, v := range s.Environment {
		out = append(out, k+"="+stringOf(v))
	}
	slices.Sort(out)
	return out
}

func stringOf(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}

// port is one "host:container" mapping.
type port struct{ host, container string }

func (s composeService) ports(t *testing.T, name string) []port {
	t.Helper()
	var out []port
	for _, p := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		if len(parts) != 2 {
			t.Errorf("%s: port %q is not HOST:CONTAINER", name, p)
			continue
		}
		for _, n := range parts {
			if v, err := strconv.Atoi(n); err != nil || v < 1 || v > 65535 {
				t.Errorf("%s: port %q: %q is not a port number", name, p, n)
			}
		}
		out = append(out, port{parts[0], parts[1]})
	}
	return out
}

func (s composeService) containerPorts() []string {
	var out []string
	for _, p := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		out = append(out, parts[len(parts)-1])
	}
	return out
}

// flagValue returns the value of --name (or -name) in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if (a == "--"+name || a == "-"+name) && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// checkClusterID reports what is wrong with a KRaft CLUSTER_ID: Kafka's storage tool wants a
// UUID as 22 characters of base64url without padding (16 bytes), e.g. what
// `kafka-storage.sh random-uuid` prints.
func checkClusterID(id string) error {
	if len(id) != 22 {
		return fmt.Errorf("%q is %d characters, want 22 (base64url of 16 bytes)", id, len(id))
	}
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return fmt.Errorf("%q is not base64url without padding: %v", id, err)
	}
	if len(b) != 16 {
		return fmt.Errorf("%q decodes to %d bytes, want 16", id, len(b))
	}
	return nil
}

func TestCheckClusterID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"uN4iB7SJQSKb4hUIZ9AOqA", true},
		{"MkU3OEVBNTcwNTJENDM2Qk", true}, // Kafka's own documentation example
		{"veil-compose-kraft-01", false}, // the old value: 21 characters, storage format fails
		{"uN4iB7SJQSKb4hUIZ9AOqA==", false},
		{"uN4iB7SJQSKb4hUIZ9AO+A", false}, // standard base64, not base64url
		{"uN4iB7SJQSKb4hUIZ9AO$A", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := checkClusterID(tt.id); (err == nil) != tt.want {
			t.Errorf("checkClusterID(%q) = %v, want ok %v", tt.id, err, tt.want)
		}
	}
}

// pinnedTag matches an image reference whose tag names a version (a digit in it), not latest.
var pinnedTag = regexp.MustCompile(`^[a-z0-9./_-]+:[A-Za-z0-9._-]*[0-9][A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?$`)

// TestCompose checks docker-compose.yml: there is no Docker engine here, so this is the check that
// the stack is wired to real config keys and that its pieces line up.
func TestCompose(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("parsing docker-compose.yml: %v", err)
	}
	for _, name := range []string{"kafka", "localstack", "redis", "veil-certs"} {
		if _, ok := cf.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
	}
	kafka, ls, redis, certs := cf.Services["kafka"], cf.Services["localstack"], cf.Services["redis"], cf.Services["veil-certs"]
	var veils []string // the services that run the pipeline
	for name, s := range cf.Services {
		if len(s.Command) > 0 && s.Command[0] == "run" {
			veils = append(veils, name)
		}
	}
	slices.Sort(veils)
	if len(veils) < 2 {
		t.Fatalf("veil services = %v, want at least two processes in one consumer group", veils)
	}

	t.Run("kafka is KRaft", func(t *testing.T) {
		if err := checkClusterID(stringOf(kafka.Environment["CLUSTER_ID"])); err != nil {
			t.Errorf("kafka CLUSTER_ID: %v", err)
		}
		roles := stringOf(kafka.Environment["KAFKA_PROCESS_ROLES"])
		if !strings.Contains(roles, "controller") || !strings.Contains(roles, "broker") {
			t.Errorf("KAFKA_PROCESS_ROLES = %q, want broker,controller (KRaft)", roles)
		}
		for k := range kafka.Environment {
			if strings.Contains(strings.ToLower(k), "zookeeper") {
				t.Errorf("kafka has ZooKeeper setting %s", k)
			}
		}
		if got := stringOf(kafka.Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]); got != "false" {
			t.Errorf("KAFKA_AUTO_CREATE_TOPICS_ENABLE = %q, want false (auto-created raw topics keep plaintext 7 days)", got)
		}
		// Listeners: name://host:port lists that must agree with each other.
		listeners := parseListeners(t, "KAFKA_LISTENERS", stringOf(kafka.Environment["KAFKA_LISTENERS"]))
		advertised := parseListeners(t, "KAFKA_ADVERTISED_LISTENERS", stringOf(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]))
		protocols := map[string]string{}
		for _, kv := range strings.Split(stringOf(kafka.Environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]), ",") {
			k, v, _ := strings.Cut(kv, ":")
			protocols[k] = v
		}
		for name := range listeners {
			if protocols[name] == "" {
				t.Errorf("listener %s has no security protocol in KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", name)
			}
		}
		for name, hp := range advertised {
			l, ok := listeners[name]
			if !ok {
				t.Errorf("advertised listener %s is not in KAFKA_LISTENERS", name)
				continue
			}
			_, ap, _ := net.SplitHostPort(hp)
			if _, lp, _ := net.SplitHostPort(l); lp != ap {
				t.Errorf("advertised listener %s port %s, listens on %s", name, ap, lp)
			}
			host, _, _ := net.SplitHostPort(hp)
			if host == "localhost" && !slices.Contains(kafka.ports(t, "kafka"), port{ap, ap}) {
				t.Errorf("listener %s is advertised to the host as localhost:%s but %s:%s is not published", name, ap, ap, ap)
			}
		}
		ctrl := stringOf(kafka.Environment["KAFKA_CONTROLLER_LISTENER_NAMES"])
		if _, ok := listeners[ctrl]; !ok || advertised[ctrl] != "" {
			t.Errorf("controller listener %q must be listened on and not advertised", ctrl)
		}
		if inter := stringOf(kafka.Environment["KAFKA_INTER_BROKER_LISTENER_NAME"]); advertised[inter] == "" {
			t.Errorf("KAFKA_INTER_BROKER_LISTENER_NAME %q is not advertised", inter)
		}
		voter, hp, _ := strings.Cut(stringOf(kafka.Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]), "@")
		if voter != stringOf(kafka.Environment["KAFKA_NODE_ID"]) {
			t.Errorf("KAFKA_CONTROLLER_QUORUM_VOTERS %s@… is not KAFKA_NODE_ID %s", voter, stringOf(kafka.Environment["KAFKA_NODE_ID"]))
		}
		if host, p, _ := net.SplitHostPort(hp); host != kafka.Hostname {
			t.Errorf("quorum voter host %s is not the kafka hostname %s", host, kafka.Hostname)
		} else if _, lp, _ := net.SplitHostPort(listeners[ctrl]); lp != p {
			t.Errorf("quorum voter port %s is not the controller listener's %s", p, lp)
		}
		for _, k := range []string{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"} {
			if stringOf(kafka.Environment[k]) != "1" {
				t.Errorf("%s = %q, want 1 on a one-broker cluster (veil needs transactions)", k, stringOf(kafka.Environment[k]))
			}
		}
		if n, err := strconv.Atoi(stringOf(kafka.Environment["KAFKA_NUM_PARTITIONS"])); err != nil || n < len(veils) {
			t.Errorf("KAFKA_NUM_PARTITIONS = %q, want at least one partition per veil process (%d)", stringOf(kafka.Environment["KAFKA_NUM_PARTITIONS"]), len(veils))
		}
	})

	t.Run("images pinned", func(t *testing.T) {
		for name, s := range cf.Services {
			if s.Build != nil {
				continue // built from this repository: see the Dockerfile subtest
			}
			if !pinnedTag.MatchString(s.Image) {
				t.Errorf("%s image %q is not pinned to a version tag", name, s.Image)
			}
		}
	})

	t.Run("localstack", func(t *testing.T) {
		svcs := strings.Split(stringOf(ls.Environment["SERVICES"]), ",")
		for _, want := range []string{"kms", "s3", "dynamodb"} {
			if !slices.Contains(svcs, want) {
				t.Errorf("localstack SERVICES = %v, lacks %s", svcs, want)
			}
		}
		for _, v := range ls.Volumes {
			src := strings.Split(v, ":")[0]
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("localstack mounts %s: %v", src, err)
			}
		}
	})

	t.Run("ports", func(t *testing.T) {
		seen := map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
			for _, p := range cf.Services[name].ports(t, name) {
				if other, ok := seen[p.host]; ok {
					t.Errorf("host port %s is published by both %s and %s", p.host, other, name)
				}
				seen[p.host] = name
			}
		}
	})

	t.Run("volumes", func(t *testing.T) {
		used := map[string]bool{}
		for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
			for _, v := range cf.Services[name].Volumes {
				parts := strings.Split(v, ":")
				if len(parts) < 2 || !strings.HasPrefix(parts[1], "/") {
					t.Errorf("%s: volume %q is not SOURCE:/container/path[:ro]", name, v)
					continue
				}
				if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
					t.Errorf("%s: volume %q: mode %q", name, v, parts[2])
				}
				if strings.HasPrefix(parts[0], ".") {
					if _, err := os.Stat(filepath.Join("..", parts[0])); err != nil {
						t.Errorf("%s mounts %s: %v", name, parts[0], err)
					}
					continue
				}
				used[parts[0]] = true
				if _, ok := cf.Volumes[parts[0]]; !ok {
					t.Errorf("%s uses volume %s that is not declared", name, parts[0])
				}
			}
		}
		for v := range cf.Volumes {
			if !used[v] {
				t.Errorf("volume %s is declared but unused", v)
			}
		}
	})

	t.Run("healthchecks and depends_on", func(t *testing.T) {
		for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
			s := cf.Services[name]
			oneShot := s.Restart == "no"
			if !oneShot {
				if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || (s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL") {
					t.Errorf("%s has no healthcheck (test [CMD …] or [CMD-SHELL …])", name)
				} else {
					for _, d := range []string{s.Healthcheck.Interval, s.Healthcheck.Timeout} {
						if _, err := time.ParseDuration(d); err != nil {
							t.Errorf("%s healthcheck interval/timeout %q: %v", name, d, err)
						}
					}
					if s.Healthcheck.Retries < 1 {
						t.Errorf("%s healthcheck retries = %d", name, s.Healthcheck.Retries)
					}
				}
				if s.Restart != "unless-stopped" && s.Restart != "always" && s.Restart != "on-failure" {
					t.Errorf("%s restart = %q, want unless-stopped (a long-running service)", name, s.Restart)
				}
			}
			for dep, d := range s.DependsOn {
				ds, ok := cf.Services[dep]
				switch {
				case !ok:
					t.Errorf("%s depends on unknown service %s", name, dep)
				case d.Condition == "service_healthy" && ds.Healthcheck == nil:
					t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				case d.Condition == "service_completed_successfully" && ds.Restart != "no":
					t.Errorf("%s waits for %s to complete, but %s is not one-shot (restart: \"no\")", name, dep, dep)
				case d.Condition != "service_healthy" && d.Condition != "service_completed_successfully":
					t.Errorf("%s depends_on %s condition = %q, want service_healthy or service_completed_successfully", name, dep, d.Condition)
				}
			}
		}
		for _, name := range veils {
			v := cf.Services[name]
			for _, dep := range []string{"kafka", "localstack", "redis"} {
				if v.DependsOn[dep].Condition != "service_healthy" {
					t.Errorf("%s depends_on %s = %q, want service_healthy", name, dep, v.DependsOn[dep].Condition)
				}
			}
			if v.DependsOn["veil-certs"].Condition != "service_completed_successfully" {
				t.Errorf("%s does not wait for veil-certs to complete", name)
			}
			if hc := v.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/usr/local/bin/veil", "check", "--ready"}) {
				t.Errorf("%s healthcheck = %+v, want [CMD /usr/local/bin/veil check --ready]", name, hc)
			}
		}
	})

	// The veil services: every VEIL_ variable is a config key, and the mounted file loads and
	// validates with each service's environment applied.
	cfgs := map[string]*Config{}
	for _, name := range veils {
		v := cf.Services[name]
		configPath := flagValue(v.Command, "config")
		if configPath == "" {
			configPath = stringOf(v.Environment[ConfigEnv])
		}
		if configPath == "" {
			t.Fatalf("%s command = %v names no config file", name, v.Command)
		}
		if env := stringOf(v.Environment[ConfigEnv]); env != "" && env != configPath {
			t.Errorf("%s: %s=%s but the command loads %s", name, ConfigEnv, env, configPath)
		}
		var hostFile string
		for _, m := range v.Volumes {
			parts := strings.Split(m, ":")
			if len(parts) >= 2 && parts[1] == configPath {
				hostFile = filepath.Join("..", parts[0])
			}
		}
		if hostFile == "" {
			t.Fatalf("%s mounts nothing at %s", name, configPath)
		}
		var veilEnv []string
		for _, kv := range v.env() {
			key, _, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(key, EnvPrefix) || key == ConfigEnv {
				continue
			}
			if !KnownEnv(key) {
				t.Errorf("%s env %s is not a config key", name, key)
			}
			veilEnv = append(veilEnv, kv)
		}
		c, err := Load(hostFile, veilEnv)
		if err != nil {
			t.Fatalf("Load(%s, %s env): %v", hostFile, name, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s config does not validate: %v", name, err)
		}
		cfgs[name] = c
	}
	fileOnly, err := Load("../deploy/veil.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fileOnly.Validate(); err != nil {
		t.Errorf("deploy/veil.yaml alone does not validate: %v", err)
	}

	t.Run("wiring", func(t *testing.T) {
		txIDs := map[string]string{}
		for _, name := range veils {
			c, v := cfgs[name], cf.Services[name]
			if c.EmbeddedBroker() {
				t.Fatalf("%s uses the embedded broker, want the kafka service", name)
			}
			advertised := stringOf(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"])
			for _, b := range c.Kafka.Brokers {
				if !strings.Contains(advertised, "//"+b) {
					t.Errorf("%s kafka.brokers %s is not an advertised listener (%s)", name, b, advertised)
				}
			}
			if c.Kafka.Group != cfgs[veils[0]].Kafka.Group {
				t.Errorf("%s kafka.group %s differs from %s's: one deployment, one group", name, c.Kafka.Group, veils[0])
			}
			if other, dup := txIDs[c.Kafka.TransactionalID]; dup {
				t.Errorf("%s and %s share kafka.transactional_id %s: one fences the other", name, other, c.Kafka.TransactionalID)
			}
			txIDs[c.Kafka.TransactionalID] = name
			if c.KMS.Provider != "aws" {
				t.Errorf("%s kms.provider = %q, want aws (LocalStack)", name, c.KMS.Provider)
			}
			checkEndpoint(t, "kms.aws.endpoint", c.KMS.AWS.Endpoint, "localstack", "4566", ls)
			if c.Store.Kind != "dynamodb" {
				t.Errorf("%s store.kind = %q, want dynamodb (LocalStack)", name, c.Store.Kind)
			}
			checkEndpoint(t, "store.dynamodb.endpoint", c.Store.DynamoDB.Endpoint, "localstack", "4566", ls)
			if !c.Store.DynamoDB.CreateTable {
				t.Errorf("%s store.dynamodb.create_table is false, and nothing else creates the table", name)
			}
			for key, s3 := range map[string]S3{"analytics.s3": c.Analytics.S3, "blob.s3": c.Blob.S3} {
				checkEndpoint(t, key+".endpoint", s3.Endpoint, "localstack", "4566", ls)
				if s3.Bucket == "" || !s3.PathStyle {
					t.Errorf("%s %s = %+v, want a bucket with path_style (LocalStack)", name, key, s3)
				}
			}
			// The key store every process shares: Redis.
			if ks := c.KeyStoreKind(); ks != "redis" {
				t.Errorf("%s key store = %q, want redis (shared by every process)", name, ks)
			}
			host, port, _ := net.SplitHostPort(c.Store.Redis.Addr)
			if host != "redis" || port != "6379" || !slices.Contains(redis.containerPorts(), port) {
				t.Errorf("%s store.redis.addr = %s, want redis:6379", name, c.Store.Redis.Addr)
			}
			if pw := string(c.Store.Redis.Password); pw == "" || !slices.Contains(redis.Command, pw) {
				t.Errorf("%s store.redis.password does not match the redis service's requirepass", name)
			}
			if !slices.Contains(redis.Command, "--appendonly") || redis.Command[slices.Index(redis.Command, "--appendonly")+1] != "yes" {
				t.Error("redis keeps the wrapped app keys: it must persist them (--appendonly yes)")
			}
			for key, addr := range map[string]string{"listen.api": c.Listen.API, "listen.metrics": c.Listen.Metrics} {
				host, port, _ := net.SplitHostPort(addr)
				if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
					t.Errorf("%s %s = %s, want all interfaces inside the container", name, key, addr)
				}
				if !slices.Contains(v.containerPorts(), port) {
					t.Errorf("%s %s port %s is not published (ports %v)", name, key, port, v.Ports)
				}
			}
			if !strings.HasPrefix(c.DataDir, "/") || !slices.Contains(v.Volumes, "veil-data:"+c.DataDir) {
				t.Errorf("%s data_dir %s is not the shared veil-data volume (%v)", name, c.DataDir, v.Volumes)
			}
			// TLS: the certificate veil-certs makes, on the volume both share, valid for the name.
			if c.Dev.PlainHTTP || c.TLS.CertFile == "" {
				t.Errorf("%s reveal API has no TLS certificate", name)
			}
			dir := flagValue(certs.Command, "dir")
			if c.TLS.CertFile != filepath.Join(dir, "cert.pem") || c.TLS.KeyFile != filepath.Join(dir, "key.pem") {
				t.Errorf("%s tls = %s, %s; veil-certs writes %s/{cert,key}.pem", name, c.TLS.CertFile, c.TLS.KeyFile, dir)
			}
			if !strings.HasPrefix(dir, c.DataDir+"/") || !slices.Contains(certs.Volumes, "veil-data:"+c.DataDir) {
				t.Errorf("veil-certs writes to %s, not on %s's data volume", dir, name)
			}
			if !slices.Contains(strings.Split(flagValue(certs.Command, "host"), ","), v.Hostname) || v.Hostname == "" {
				t.Errorf("the certificate's hosts %q lack %s's hostname %q", flagValue(certs.Command, "host"), name, v.Hostname)
			}
		}
		if certs.Command[0] != "certs" || certs.Build == nil {
			t.Errorf("veil-certs = %v, want the veil image running veil certs", certs.Command)
		}
	})

	t.Run("docker-compose config", func(t *testing.T) {
		// The Compose implementation's own validation (schema, merge keys, depends_on conditions,
		// port and volume syntax), without an engine. Debian's docker-compose is v1, which
		// predates the top-level name: key; it is dropped from the copy it reads.
		bin, err := exec.LookPath("docker-compose")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("docker-compose not installed (scripts/test-deps.sh installs it)")
			}
			t.Skip("docker-compose not installed (scripts/test-deps.sh installs it)")
		}
		dir := t.TempDir()
		body := regexp.MustCompile(`(?m)^name: .*\n`).ReplaceAll(b, nil)
		if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), body, 0o600); err != nil {
			t.Fatal(err)
		}
		root, _ := filepath.Abs("..")
		cmd := exec.Command(bin, "--project-directory", root, "-f", filepath.Join(dir, "docker-compose.yml"), "config", "-q")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker-compose config: %v\n%s", err, out)
		}
	})

	t.Run("Dockerfile", func(t *testing.T) {
		v := cf.Services[veils[0]]
		if v.Build == nil {
			t.Fatal("veil is not built from the repository")
		}
		df, err := os.ReadFile(filepath.Join("..", v.Build.Context, v.Build.Dockerfile))
		if err != nil {
			t.Fatal(err)
		}
		s := string(df)
		for _, want := range []string{"FROM golang:1.26", "distroless/static", "./cmd/veil", "CGO_ENABLED=0", "/var/lib/veil"} {
			if !strings.Contains(s, want) {
				t.Errorf("Dockerfile lacks %q", want)
			}
		}
		if strings.Contains(s, "COPY . .") {
			ign, err := os.ReadFile(filepath.Join("..", v.Build.Context, ".dockerignore"))
			if err != nil {
				t.Fatalf("Dockerfile copies the whole context and there is no .dockerignore: %v", err)
			}
			lines := strings.Fields(string(ign))
			for _, want := range []string{"veil-data/", "veil-data.kms/", "bin/", ".cache/", ".git"} {
				if !slices.Contains(lines, want) {
					t.Errorf(".dockerignore lacks %s (it would be copied into the build context)", want)
				}
			}
		}
	})
}

// parseListeners parses "NAME://host:port,…" into name → host:port.
func parseListeners(t *testing.T, key, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(s, ",") {
		name, hp, ok := strings.Cut(l, "://")
		if _, _, err := net.SplitHostPort(hp); !ok || err != nil {
			t.Errorf("%s: %q is not NAME://host:port", key, l)
			continue
		}
		out[name] = hp
	}
	return out
}

func checkEndpoint(t *testing.T, key, endpoint, service, port string, svc composeService) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() != service || u.Port() != port {
		t.Errorf("%s = %q, want http://%s:%s", key, endpoint, service, port)
	}
	if !slices.Contains(svc.containerPorts(), port) {
		t.Errorf("%s port %s not exposed by %s", key, port, service)
	}
}
