package schemas

import (
	"reflect"
	"strings"
	"testing"
)

func TestDefaultRegistry(t *testing.T) {
	media := []string{"data.url", "data.filename", "data.text"}
	http := []string{"data.url", "data.query", "data.headers", "data.body"}
	tests := []struct {
		typ      string
		ledger   string
		category Category
		fields   []string
	}{
		{"meya.text.event.say", "event", CategoryOrdinary, []string{"data.text"}},
		{"meya.button.event.click", "event", CategoryOrdinary, []string{"data.text", "data.data"}},
		{"meya.form.event.submit", "event", CategoryOrdinary, []string{"data.fields"}},
		{"meya.image.event", "event", CategoryMedia, media},
		{"meya.file.event", "event", CategoryMedia, media},
		{"meya.video.event", "event", CategoryMedia, media},
		{"meya.audio.event", "event", CategoryMedia, media},
		{"meya.component.entry.response", "event", CategoryComponent, []string{"data.result"}},
		{"meya.trigger.entry.response", "event", CategoryTrigger, []string{"data.result"}},
		{"meya.flow.entry.step", "bot", CategoryOrdinary, []string{"data.data"}},
		{"meya.http.entry.request", "http", CategoryTransport, http},
		{"meya.http.entry.response", "http", CategoryTransport, http},
		{"meya.ws.entry.message", "ws", CategoryTransport, []string{"data.payload"}},
		{"meya.log.entry", "log", CategoryOrdinary, []string{"data.message", "data.attributes"}},
		{"meya.presence.event.typing", "presence", CategoryOrdinary, []string{"data.text"}},
		{"meya.thread.entry.write", "thread", CategoryOrdinary, []string{"data.value"}},
		{"meya.user.entry.write", "user", CategoryOrdinary, []string{"data.value"}},
		{"meya.blob.entry", "blob", CategoryMedia, []string{"data.content", "data.object", "data.filename"}},
	}
	reg := DefaultRegistry()
	if got, want := len(reg.Types()), len(tests); got != want {
		t.Errorf("len(DefaultRegistry().Types()) = %d, want %d: %q", got, want, reg.Types())
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			info, ok := reg.Lookup(tt.typ)
			if !ok {
				t.Fatalf("Lookup(%s) = absent, want present", tt.typ)
			}
			if !reflect.DeepEqual(info.Ledgers, []string{tt.ledger}) {
				t.Errorf("Lookup(%s).Ledgers = %q, want [%s]", tt.typ, info.Ledgers, tt.ledger)
			}
			if !info.AllowsLedger(tt.ledger) || info.AllowsLedger("event-x") {
				t.Errorf("Lookup(%s).AllowsLedger wrong", tt.typ)
			}
			if info.Category != tt.category {
				t.Errorf("Lookup(%s).Category = %v, want %v", tt.typ, info.Category, tt.category)
			}
			if !reflect.DeepEqual(info.Fields, tt.fields) {
				t.Errorf("Lookup(%s).Fields = %q, want %q", tt.typ, info.Fields, tt.fields)
			}
		})
	}
	if _, ok := reg.Lookup("meya.unknown"); ok {
		t.Error("Lookup(meya.unknown) = present, want absent")
	}
}

func TestNewRegistryRejects(t *testing.T) {
	ok := TypeInfo{Type: "t", Ledgers: []string{"event"}, Category: CategoryOrdinary, Fields: []string{"data.x"}}
	with := func(f func(*TypeInfo)) []TypeInfo { r := ok; f(&r); return []TypeInfo{r} }
	tests := []struct {
		name string
		rows []TypeInfo
	}{
		{"empty type", with(func(r *TypeInfo) { r.Type = "" })},
		{"bad type", with(func(r *TypeInfo) { r.Type = "a b" })},
		{"duplicate", []TypeInfo{ok, ok}},
		{"no ledger", with(func(r *TypeInfo) { r.Ledgers = nil })},
		{"bad ledger", with(func(r *TypeInfo) { r.Ledgers = []string{"a/b"} })},
		{"no category", with(func(r *TypeInfo) { r.Category = 0 })},
		{"unknown category", with(func(r *TypeInfo) { r.Category = CategoryTransport + 1 })},
		{"field outside data", with(func(r *TypeInfo) { r.Fields = []string{"id"} })},
		{"field empty segment", with(func(r *TypeInfo) { r.Fields = []string{"data..x"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := NewRegistry(tt.rows); err == nil {
				t.Errorf("NewRegistry() = %v, nil; want error", r)
			}
		})
	}
	rows := []TypeInfo{ok}
	r, err := NewRegistry(rows)
	if err != nil {
		t.Fatalf("NewRegistry(valid) = %v", err)
	}
	rows[0].Fields[0] = "data.changed"
	if info, _ := r.Lookup("t"); info.Fields[0] != "data.x" {
		t.Errorf("registry shares the caller's slices: Fields = %q", info.Fields)
	}
}

func TestCategoryString(t *testing.T) {
	for c := CategoryOrdinary; c <= CategoryTransport; c++ {
		if s := c.String(); s == "unknown" || strings.TrimSpace(s) == "" {
			t.Errorf("Category(%d).String() = %q", c, s)
		}
	}
	if s := Category(0).String(); s != "unknown" {
		t.Errorf("Category(0).String() = %q, want unknown", s)
	}
}
