package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const integrationsYAML = `
integrations:
  zendesk:
    kind: support
    ledgers: [event, blob]
    topic: out.zendesk
  crm-sync:
    kind: other
    apps: [app-42]
    ledgers: [event]
    topic: out.crm
`

func TestIntegrationsLoad(t *testing.T) {
	c := loadValid(t, writeFile(t, integrationsYAML), []string{
		"VEIL_INTEGRATIONS_ZENDESK_APPS=app-1, app-2",
		"VEIL_INTEGRATIONS_BI_KIND=other",
		"VEIL_INTEGRATIONS_BI_OVERRIDE=true",
		"VEIL_INTEGRATIONS_BI_LEDGERS=event,http",
		"VEIL_INTEGRATIONS_BI_TOPIC=out.bi",
	})
	want := map[string]Integration{
		"zendesk":  {Kind: "support", Apps: []string{"app-1", "app-2"}, Ledgers: []string{"event", "blob"}, Topic: "out.zendesk"},
		"crm-sync": {Kind: "other", Apps: []string{"app-42"}, Ledgers: []string{"event"}, Topic: "out.crm"},
		"bi":       {Kind: "other", Override: true, Ledgers: []string{"event", "http"}, Topic: "out.bi"},
	}
	if !reflect.DeepEqual(c.Integrations, want) {
		t.Errorf("Integrations = %+v, want %+v", c.Integrations, want)
	}
}

func TestIntegrationsValidate(t *testing.T) {
	ok := Integration{Kind: "messaging", Ledgers: []string{"event"}, Topic: "out.chat"}
	with := func(f func(*Integration)) map[string]Integration {
		in := ok
		f(&in)
		return map[string]Integration{"chat": in}
	}
	tests := []struct {
		name string
		ins  map[string]Integration
		key  string // the key the error must name; empty: valid
	}{
		{"valid", with(func(*Integration) {}), ""},
		{"other with override", with(func(in *Integration) { in.Kind, in.Override = "other", true }), ""},
		{"kind admin", with(func(in *Integration) { in.Kind = "admin" }), "integrations.chat.kind"},
		{"no kind", with(func(in *Integration) { in.Kind = "" }), "integrations.chat.kind"},
		{"override on support", with(func(in *Integration) { in.Kind, in.Override = "support", true }), "integrations.chat.override"},
		{"no ledgers", with(func(in *Integration) { in.Ledgers = nil }), "integrations.chat.ledgers"},
		{"unknown ledger", with(func(in *Integration) { in.Ledgers = []string{"evnt"} }), "integrations.chat.ledgers"},
		{"empty app", with(func(in *Integration) { in.Apps = []string{" "} }), "integrations.chat.apps"},
		{"no topic", with(func(in *Integration) { in.Topic = "" }), "integrations.chat.topic"},
		{"encrypted topic", with(func(in *Integration) { in.Topic = "encrypted.event" }), "integrations.chat.topic"},
		{"raw topic", with(func(in *Integration) { in.Topic = "ledger.event" }), "integrations.chat.topic"},
		{"audit topic", with(func(in *Integration) { in.Topic = "veil.audit" }), "integrations.chat.topic"},
		{"topic with space", with(func(in *Integration) { in.Topic = "out chat" }), "integrations.chat.topic"},
		{"bad name", map[string]Integration{"a b": ok}, "integrations"},
		{"shared topic", map[string]Integration{"a": ok, "b": ok}, "integrations.b.topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Integrations = tt.ins
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.key+":") {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.key)
			}
		})
	}
}
