package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       *composeBuild  `yaml:"build"`
	Command     []string       `yaml:"command"`
	Environment map[string]any `yaml:"environment"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
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

// containerPorts returns the container side of "host:container" port mappings.
func (s composeService) containerPorts() []string {
	var out []string
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		out = append(out, strings.TrimSuffix(parts[len(parts)-1], "/tcp"))
	}
	return out
}

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
	for _, name := range []string{"kafka", "localstack", "redis", "veil"} {
		if _, ok := cf.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
	}
	kafka, ls, redis, veil := cf.Services["kafka"], cf.Services["localstack"], cf.Services["redis"], cf.Services["veil"]

	t.Run("kafka is KRaft", func(t *testing.T) {
		if !strings.Contains(kafka.Image, "kafka") {
			t.Errorf("kafka image = %q", kafka.Image)
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
	})
	t.Run("localstack services", func(t *testing.T) {
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

	// The veil service: every VEIL_ variable is a config key, and the mounted file loads and
	// validates with the service's environment applied.
	var configPath string
	for i, arg := range veil.Command {
		if arg == "-config" && i+1 < len(veil.Command) {
			configPath = veil.Command[i+1]
		}
	}
	if veil.Command[0] != "run" || configPath == "" {
		t.Fatalf("veil command = %v, want run -config FILE", veil.Command)
	}
	var hostFile string
	for _, v := range veil.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == configPath {
			hostFile = filepath.Join("..", parts[0])
		}
	}
	if hostFile == "" {
		t.Fatalf("veil mounts nothing at %s", configPath)
	}
	var veilEnv []string
	for _, kv := range veil.env() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) {
			if !KnownEnv(name) {
				t.Errorf("veil env %s is not a config key", name)
			}
			veilEnv = append(veilEnv, kv)
		}
	}
	if len(veilEnv) == 0 {
		t.Error("veil service sets no VEIL_ variables")
	}
	c, err := Load(hostFile, veilEnv)
	if err != nil {
		t.Fatalf("Load(%s, compose env): %v", hostFile, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("compose config does not validate: %v", err)
	}
	fileOnly, err := Load(hostFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fileOnly.Validate(); err != nil {
		t.Errorf("%s alone does not validate: %v", hostFile, err)
	}

	t.Run("wiring", func(t *testing.T) {
		if c.EmbeddedBroker() {
			t.Fatal("compose config uses the embedded broker, want the kafka service")
		}
		advertised := stringOf(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"])
		for _, b := range c.Kafka.Brokers {
			if !strings.Contains(advertised, "//"+b) {
				t.Errorf("kafka.brokers %s is not an advertised listener (%s)", b, advertised)
			}
		}
		if c.KMS.Provider != "aws" {
			t.Errorf("kms.provider = %q, want aws (LocalStack)", c.KMS.Provider)
		}
		checkEndpoint(t, "kms.aws.endpoint", c.KMS.AWS.Endpoint, "localstack", "4566", ls)
		checkEndpoint(t, "store.dynamodb.endpoint", c.Store.DynamoDB.Endpoint, "localstack", "4566", ls)
		if c.Store.Kind != "redis" {
			t.Errorf("store.kind = %q, want redis", c.Store.Kind)
		}
		host, port, _ := net.SplitHostPort(c.Store.Redis.Addr)
		if host != "redis" || port != "6379" {
			t.Errorf("store.redis.addr = %s, want redis:6379", c.Store.Redis.Addr)
		}
		if pw := string(c.Store.Redis.Password); pw == "" || !slices.Contains(redis.Command, pw) {
			t.Error("store.redis.password does not match the redis service's requirepass")
		}
		for key, addr := range map[string]string{"listen.api": c.Listen.API, "listen.metrics": c.Listen.Metrics} {
			host, port, _ := net.SplitHostPort(addr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
				t.Errorf("%s = %s, want all interfaces inside the container", key, addr)
			}
			if !slices.Contains(veil.containerPorts(), port) {
				t.Errorf("%s port %s is not published (ports %v)", key, port, veil.Ports)
			}
		}
		if !strings.HasPrefix(c.DataDir, "/") || !slices.ContainsFunc(veil.Volumes, func(v string) bool {
			return strings.HasSuffix(v, ":"+c.DataDir)
		}) {
			t.Errorf("data_dir %s is not a mounted volume (%v)", c.DataDir, veil.Volumes)
		}
		for _, dep := range []string{"kafka", "localstack", "redis"} {
			d, ok := veil.DependsOn[dep]
			if !ok || d.Condition != "service_healthy" {
				t.Errorf("veil depends_on %s = %+v, want condition service_healthy", dep, d)
			}
			if cf.Services[dep].Healthcheck == nil || len(cf.Services[dep].Healthcheck.Test) == 0 {
				t.Errorf("%s has no healthcheck for veil to wait on", dep)
			}
		}
		for _, v := range veil.Volumes {
			name := strings.Split(v, ":")[0]
			if !strings.HasPrefix(name, ".") {
				if _, ok := cf.Volumes[name]; !ok {
					t.Errorf("veil uses volume %s that is not declared", name)
				}
			}
		}
	})

	t.Run("Dockerfile", func(t *testing.T) {
		if veil.Build == nil {
			t.Fatal("veil is not built from the repository")
		}
		df, err := os.ReadFile(filepath.Join("..", veil.Build.Context, veil.Build.Dockerfile))
		if err != nil {
			t.Fatal(err)
		}
		s := string(df)
		for _, want := range []string{"FROM golang:1.26", "distroless/static", "./cmd/veil", "CGO_ENABLED=0", "/var/lib/veil"} {
			if !strings.Contains(s, want) {
				t.Errorf("Dockerfile lacks %q", want)
			}
		}
	})
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
