// Package sample generates deterministic, realistic transcript traffic for every ledger: the demo,
// the end-to-end tests and the benchmark all read it. Entries are 200 B – 2 KiB and about half of
// them are sensitive under the default rules. With canaries on, every value veil will seal carries
// a unique marker, so a scan for markers finds any plaintext that leaked.
package sample

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/veil-project/veil/ledgers"
	"github.com/veil-project/veil/schemas"
)

// Generator produces entries. It is not safe for concurrent use.
type Generator struct {
	rng      *rand.Rand
	apps     []string
	reg      *schemas.Registry
	now      func() time.Time
	canaries bool
	seq      int
	types    []typeRow
}

type typeRow struct {
	typ    string
	ledger string
}

// Options configure a Generator.
type Options struct {
	Seed     uint64
	Apps     []string         // default ["app-1", "app-2"]
	Now      func() time.Time // event time of generated entries; default time.Now
	Canaries bool             // mark every value that will be sealed with CanaryPrefix + sequence
}

// CanaryPrefix starts every canary marker.
const CanaryPrefix = "CANARY-7f3a-"

// New returns a generator over the default registry.
func New(o Options) *Generator {
	if len(o.Apps) == 0 {
		o.Apps = []string{"app-1", "app-2"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Generator{rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)), apps: o.Apps, reg: schemas.DefaultRegistry(), now: o.Now, canaries: o.Canaries}
	for _, row := range typeMix {
		g.types = append(g.types, row)
	}
	return g
}

// typeMix weights the realistic mix: mostly say events, then logs, http, flow steps, presence.
var typeMix = []typeRow{
	{"meya.text.event.say", "event"}, {"meya.text.event.say", "event"}, {"meya.text.event.say", "event"},
	{"meya.button.event.click", "event"}, {"meya.form.event.submit", "event"},
	{"meya.image.event", "event"}, {"meya.component.entry.response", "event"}, {"meya.trigger.entry.response", "event"},
	{"meya.flow.entry.step", "bot"}, {"meya.flow.entry.step", "bot"},
	{"meya.http.entry.request", "http"}, {"meya.http.entry.response", "http"},
	{"meya.ws.entry.message", "ws"},
	{"meya.log.entry", "log"}, {"meya.log.entry", "log"},
	{"meya.presence.event.typing", "presence"},
	{"meya.thread.entry.write", "thread"}, {"meya.user.entry.write", "user"},
	{"meya.blob.entry", "blob"},
}

// Entry is one generated entry.
type Entry struct {
	Key      []byte // thread id
	Value    []byte // the entry's JSON
	Ledger   string
	ID       string
	Canaries []string // markers placed in values that will be sealed
	Entry    *schemas.Entry
}

var words = strings.Fields("the order arrived late and I would like a refund please my account number is on the invoice " +
	"could you check the delivery address again thanks for the quick help agent will follow up shortly")

func (g *Generator) text(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[g.rng.IntN(len(words))])
	}
	return b.String()
}

// Next returns the next entry.
func (g *Generator) Next() Entry {
	g.seq++
	row := g.types[g.rng.IntN(len(g.types))]
	app := g.apps[g.rng.IntN(len(g.apps))]
	thread := fmt.Sprintf("t-%d", g.rng.IntN(5000))
	mode := []string{"bot", "bot", "bot", "bot", "bot", "agent", "prechat"}[g.rng.IntN(7)]
	utype := []string{"user", "user", "user", "bot", "bot", "bot", "agent", "system"}[g.rng.IntN(8)]
	size := 150 + g.rng.IntN(1700) // text budget: entries land between ~200 B and ~2 KiB
	e := &schemas.Entry{
		ID: fmt.Sprintf("e-%08d", g.seq), AppID: app, Ledger: row.ledger, Type: row.typ,
		TS:     g.now().UTC().Truncate(time.Millisecond),
		Thread: schemas.Thread{ID: thread, Mode: mode}, User: schemas.User{ID: fmt.Sprintf("u-%d", g.rng.IntN(9000)), Type: utype},
		Data: map[string]any{},
	}
	d := e.Data
	switch row.typ {
	case "meya.text.event.say", "meya.presence.event.typing":
		d["text"] = g.text(size)
	case "meya.button.event.click":
		d["text"] = g.text(20)
		d["data"] = map[string]any{"choice": g.text(size / 2)}
		d["button_id"] = "b-1"
	case "meya.form.event.submit":
		d["fields"] = map[string]any{"email": "jane@example.com", "note": g.text(size)}
		d["form_id"] = "f-2"
	case "meya.image.event":
		d["url"] = "https://cdn.example.com/i/" + thread + ".png"
		d["filename"] = "photo.png"
		d["text"] = g.text(size / 4)
	case "meya.component.entry.response":
		e.Component = &schemas.Component{ID: "c-1"}
		if g.rng.IntN(3) == 0 {
			f := false
			e.Component.Sensitive = &f
		}
		d["result"] = map[string]any{"answer": g.text(size)}
	case "meya.trigger.entry.response":
		e.Trigger = &schemas.Trigger{EntryID: "e-prev", Sensitive: g.rng.IntN(2) == 0}
		d["result"] = g.text(size)
	case "meya.flow.entry.step":
		d["data"] = map[string]any{"step": g.rng.IntN(20), "note": g.text(size)}
		d["flow"] = "checkout"
	case "meya.http.entry.request", "meya.http.entry.response":
		d["url"] = "https://api.example.com/v1/orders?q=" + thread
		d["query"] = map[string]any{"q": thread}
		d["headers"] = map[string]any{"content-type": "application/json"}
		d["body"] = g.text(size)
		d["method"] = "POST"
	case "meya.ws.entry.message":
		d["payload"] = g.text(size)
	case "meya.log.entry":
		d["message"] = g.text(size)
		d["attributes"] = map[string]any{"level": "info"}
		d["logger"] = "flow"
	case "meya.thread.entry.write", "meya.user.entry.write":
		d["key"] = "address"
		d["value"] = g.text(size)
	case "meya.blob.entry":
		d["content"] = "aGVsbG8gd29ybGQ=" // "hello world", base64
		d["filename"] = "note.txt"
	}
	out := Entry{Key: []byte(thread), Ledger: row.ledger, ID: e.ID, Entry: e}
	if g.canaries {
		dec := ledgers.Decide(e, ledgers.DefaultAppSettings, g.reg)
		for i, ps := range dec.Paths {
			p, err := schemas.ParsePath(ps)
			if err != nil {
				continue
			}
			if _, ok := e.Get(p); !ok {
				continue
			}
			c := fmt.Sprintf("%s%d-%d", CanaryPrefix, g.seq, i)
			v := c + " " + g.text(40)
			if ps == "data.content" {
				// Inline media are base64: the canary is in the decoded bytes, where a leak
				// of the media plaintext would show it.
				v = base64.StdEncoding.EncodeToString([]byte(v))
			}
			e.Set(p, v)
			out.Canaries = append(out.Canaries, c)
		}
	}
	b, err := e.Encode()
	if err != nil {
		panic(fmt.Sprintf("sample: encoding generated entry: %v", err))
	}
	out.Value = b
	return out
}
