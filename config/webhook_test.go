package config

import (
	"errors"
	"strings"
	"testing"
)

// TestWebhookIntegrationValidate: delivery webhook needs an https URL without credentials and a
// secret of 16+ bytes (from the environment here), and takes no topic; url, secret and ca_file
// are refused on a topic delivery. Errors name the key, never the secret.
func TestWebhookIntegrationValidate(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	tests := []struct {
		name, yaml string
		env        []string
		key        string // "" : valid
	}{
		{"valid", "url: https://hooks.example/veil", []string{"VEIL_INTEGRATIONS_HOOK_SECRET=" + secret}, ""},
		{"plain http", "url: http://hooks.example/veil", []string{"VEIL_INTEGRATIONS_HOOK_SECRET=" + secret}, "integrations.hook.url"},
		{"credentials", "url: https://u:p@hooks.example/veil", []string{"VEIL_INTEGRATIONS_HOOK_SECRET=" + secret}, "integrations.hook.url"},
		{"no url", "", []string{"VEIL_INTEGRATIONS_HOOK_SECRET=" + secret}, "integrations.hook.url"},
		{"no secret", "url: https://hooks.example/veil", nil, "integrations.hook.secret"},
		{"short secret", "url: https://hooks.example/veil", []string{"VEIL_INTEGRATIONS_HOOK_SECRET=short-secret"}, "integrations.hook.secret"},
		{"with topic", "url: https://hooks.example/veil\n    topic: out.hook", []string{"VEIL_INTEGRATIONS_HOOK_SECRET=" + secret}, "integrations.hook.topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeFile(t, "integrations:\n  hook:\n    kind: support\n    ledgers: [event]\n    delivery: webhook\n    "+tt.yaml+"\n"), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			switch {
			case tt.key == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.key != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.key)):
				t.Errorf("Validate() = %v, want ErrInvalid naming %s", err, tt.key)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("Validate() error holds the secret: %v", err)
			}
		})
	}
	c, err := Load(writeFile(t, "integrations:\n  desk:\n    kind: support\n    ledgers: [event]\n    topic: out.desk\n    url: https://hooks.example/veil\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "integrations.desk.url") {
		t.Errorf("Validate(url on a topic delivery) = %v, want ErrInvalid naming integrations.desk.url", err)
	}
}
