package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigErrorsNameKeys: a mistake in the YAML file is reported by its key path and line, not
// by a Go type; an unknown ledger lists the valid ones; secret values are never quoted.
func TestConfigErrorsNameKeys(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"typo", "kafka:\n  brokrs: [a:9092]\n", []string{"kafka.brokrs: unknown key (line 2); did you mean kafka.brokers?"}},
		{"unknown top-level key", "nonsense: 1\n", []string{"nonsense: unknown key (line 1); known keys at the top level: kafka, data_dir"}},
		{"wrong kind", "limits:\n  max_depth: deep\n  future_skew: soon\n", []string{"limits.max_depth: want an integer (line 2)", "limits.future_skew: want a duration such as 90s, 5m or 1h (line 3)"}},
		{"under a map", "apps:\n  app-1: {transcript: maybe, colour: red}\n", []string{"apps.app-1.transcript: want true or false (line 2)", "apps.app-1.colour: unknown key"}},
		{"list wanted", "kafka:\n  brokers: a:9092\n", []string{"kafka.brokers: want a list (of strings)"}},
		{"secret not quoted", "store:\n  redis:\n    password: [hunter2]\n", []string{"store.redis.password: want a string (line 3)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "veil.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o600)
			_, err := Load(p, nil)
			if err == nil {
				t.Fatalf("Load(%q) = nil error", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%q) error = %q, want it to contain %q", tt.yaml, err, w)
				}
			}
			if strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Load(%q) error names a Go type or quotes a value: %q", tt.yaml, err)
			}
		})
	}
	// Valid files still load, durations and all.
	p := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(p, []byte("limits: {future_skew: 90s}\nkafka: {brokers: [a:9092]}\napps: {app-1: {transcript: false}}\n"), 0o600)
	c, err := Load(p, nil)
	if err != nil || c.Limits.FutureSkew.Seconds() != 90 || len(c.Kafka.Brokers) != 1 || *c.Apps["app-1"].Transcript {
		t.Errorf("Load(valid) = %+v, %v", c, err)
	}

	if _, err := Load("", []string{"VEIL_KAFKA_BROKRS=a:9092"}); err == nil || !strings.Contains(err.Error(), "unknown variable VEIL_KAFKA_BROKRS; did you mean VEIL_KAFKA_BROKERS?") {
		t.Errorf("Load(VEIL_KAFKA_BROKRS) = %v, want a suggestion", err)
	}

	c = Default()
	c.Ledgers = map[string]Ledger{"evnt": {TTL: 3600e9}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ledgers.evnt: unknown ledger; the ledgers are event, bot, http") {
		t.Errorf("Validate(ledgers.evnt) = %v, want the valid ledger names", err)
	}
}
