package schemas

import (
	"fmt"
	"slices"
	"sync"

	"github.com/veil-project/veil/names"
)

// Category decides which rule flags an entry type (DESIGN §3).
type Category uint8

const (
	CategoryOrdinary  Category = iota + 1 // event rule: thread mode / user type
	CategoryMedia                         // always, with transcript
	CategoryComponent                     // component.sensitive (default true), with transcript
	CategoryTrigger                       // the incoming event was flagged sensitive, with transcript
	CategoryTransport                     // app transport setting
)

// TypeInfo is one row of the registry.
type TypeInfo struct {
	Type     string
	Ledgers  []string // ledgers the type may be published to
	Category Category
	Fields   []string // sensitive field paths, e.g. "data.text"
}

// String returns the category's name as DESIGN §2 spells it.
func (c Category) String() string {
	switch c {
	case CategoryOrdinary:
		return "ordinary"
	case CategoryMedia:
		return "media"
	case CategoryComponent:
		return "component response"
	case CategoryTrigger:
		return "trigger response"
	case CategoryTransport:
		return "transport"
	}
	return "unknown"
}

// AllowsLedger reports whether entries of this type may be published to the named ledger.
func (t TypeInfo) AllowsLedger(name string) bool { return slices.Contains(t.Ledgers, name) }

// Registry maps entry types to their row. It is immutable once built and safe for concurrent use.
type Registry struct {
	types map[string]TypeInfo
}

// NewRegistry builds a registry from rows. Every row needs a type name, at least one ledger, a
// known category and valid field paths (see ParsePath); type names must be unique. The rows are
// copied.
func NewRegistry(rows []TypeInfo) (*Registry, error) {
	r := &Registry{types: make(map[string]TypeInfo, len(rows))}
	for i, row := range rows {
		if !names.Valid(row.Type) {
			return nil, fmt.Errorf("building registry: row %d: invalid type name", i)
		}
		if _, dup := r.types[row.Type]; dup {
			return nil, fmt.Errorf("building registry: type %s listed twice", row.Type)
		}
		if len(row.Ledgers) == 0 {
			return nil, fmt.Errorf("building registry: type %s: no ledger", row.Type)
		}
		for _, l := range row.Ledgers {
			if !names.Valid(l) {
				return nil, fmt.Errorf("building registry: type %s: invalid ledger name", row.Type)
			}
		}
		if row.Category < CategoryOrdinary || row.Category > CategoryTransport {
			return nil, fmt.Errorf("building registry: type %s: unknown category %d", row.Type, row.Category)
		}
		for _, f := range row.Fields {
			if _, err := ParsePath(f); err != nil {
				return nil, fmt.Errorf("building registry: type %s: %w", row.Type, err)
			}
		}
		row.Ledgers = slices.Clone(row.Ledgers)
		row.Fields = slices.Clone(row.Fields)
		r.types[row.Type] = row
	}
	return r, nil
}

// Lookup returns the row of typ. The returned slices are shared with the registry and must not be
// modified.
func (r *Registry) Lookup(typ string) (TypeInfo, bool) {
	t, ok := r.types[typ]
	return t, ok
}

// Types returns the registered type names in order.
func (r *Registry) Types() []string {
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// DefaultRows returns the rows of DESIGN §2, the types producers may rely on.
func DefaultRows() []TypeInfo {
	media := []string{"data.url", "data.filename", "data.text"}
	http := []string{"data.url", "data.query", "data.headers", "data.body"}
	return []TypeInfo{
		{Type: "meya.text.event.say", Ledgers: []string{"event"}, Category: CategoryOrdinary, Fields: []string{"data.text"}},
		{Type: "meya.button.event.click", Ledgers: []string{"event"}, Category: CategoryOrdinary, Fields: []string{"data.text", "data.data"}},
		{Type: "meya.form.event.submit", Ledgers: []string{"event"}, Category: CategoryOrdinary, Fields: []string{"data.fields"}},
		{Type: "meya.image.event", Ledgers: []string{"event"}, Category: CategoryMedia, Fields: media},
		{Type: "meya.file.event", Ledgers: []string{"event"}, Category: CategoryMedia, Fields: media},
		{Type: "meya.video.event", Ledgers: []string{"event"}, Category: CategoryMedia, Fields: media},
		{Type: "meya.audio.event", Ledgers: []string{"event"}, Category: CategoryMedia, Fields: media},
		{Type: "meya.component.entry.response", Ledgers: []string{"event"}, Category: CategoryComponent, Fields: []string{"data.result"}},
		{Type: "meya.trigger.entry.response", Ledgers: []string{"event"}, Category: CategoryTrigger, Fields: []string{"data.result"}},
		{Type: "meya.flow.entry.step", Ledgers: []string{"bot"}, Category: CategoryOrdinary, Fields: []string{"data.data"}},
		{Type: "meya.http.entry.request", Ledgers: []string{"http"}, Category: CategoryTransport, Fields: http},
		{Type: "meya.http.entry.response", Ledgers: []string{"http"}, Category: CategoryTransport, Fields: http},
		{Type: "meya.ws.entry.message", Ledgers: []string{"ws"}, Category: CategoryTransport, Fields: []string{"data.payload"}},
		{Type: "meya.log.entry", Ledgers: []string{"log"}, Category: CategoryOrdinary, Fields: []string{"data.message", "data.attributes"}},
		{Type: "meya.presence.event.typing", Ledgers: []string{"presence"}, Category: CategoryOrdinary, Fields: []string{"data.text"}},
		{Type: "meya.thread.entry.write", Ledgers: []string{"thread"}, Category: CategoryOrdinary, Fields: []string{"data.value"}},
		{Type: "meya.user.entry.write", Ledgers: []string{"user"}, Category: CategoryOrdinary, Fields: []string{"data.value"}},
		{Type: "meya.blob.entry", Ledgers: []string{"blob"}, Category: CategoryMedia, Fields: []string{"data.content", "data.object", "data.filename"}},
	}
}

var defaultRegistry = sync.OnceValue(func() *Registry {
	r, err := NewRegistry(DefaultRows())
	if err != nil {
		panic(err) // the rows above are constants; a failure is a programming error
	}
	return r
})

// DefaultRegistry returns the registry of DESIGN §2. It is shared and immutable.
func DefaultRegistry() *Registry { return defaultRegistry() }
