package ledgers

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/schemas"
)

func ptr[T any](v T) *T { return &v }

var (
	on       = DefaultAppSettings
	allOff   = AppSettings{}
	noTransc = AppSettings{Transcript: false, Transport: true}
	noTransp = AppSettings{Transcript: true, Transport: false}
)

type entryOpt func(*schemas.Entry)

func mode(m string) entryOpt     { return func(e *schemas.Entry) { e.Thread.Mode = m } }
func userType(u string) entryOpt { return func(e *schemas.Entry) { e.User.Type = u } }
func sensitive(b bool) entryOpt  { return func(e *schemas.Entry) { e.Sensitive = &b } }
func paths(p ...string) entryOpt { return func(e *schemas.Entry) { e.SensitivePaths = p } }
func component(s *bool) entryOpt {
	return func(e *schemas.Entry) { e.Component = &schemas.Component{ID: "c", Sensitive: s} }
}
func trigger(s bool) entryOpt {
	return func(e *schemas.Entry) { e.Trigger = &schemas.Trigger{EntryID: "e0", Sensitive: s} }
}
func ledger(l string) entryOpt { return func(e *schemas.Entry) { e.Ledger = l } }
func noComponent() entryOpt    { return func(e *schemas.Entry) { e.Component = nil } }

func entry(typ string, opts ...entryOpt) *schemas.Entry {
	e := &schemas.Entry{ID: "e1", AppID: "app", Type: typ, TS: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Thread: schemas.Thread{ID: "t", Mode: "bot"}, User: schemas.User{ID: "u", Type: "user"},
		Data: map[string]any{"text": "secret"}}
	if info, ok := schemas.DefaultRegistry().Lookup(typ); ok {
		e.Ledger = info.Ledgers[0]
	} else {
		e.Ledger = "event"
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

const (
	say       = "meya.text.event.say"
	image     = "meya.image.event"
	comp      = "meya.component.entry.response"
	trig      = "meya.trigger.entry.response"
	httpReq   = "meya.http.entry.request"
	httpResp  = "meya.http.entry.response"
	wsMsg     = "meya.ws.entry.message"
	blob      = "meya.blob.entry"
	flow      = "meya.flow.entry.step"
	logEntry  = "meya.log.entry"
	typing    = "meya.presence.event.typing"
	threadW   = "meya.thread.entry.write"
	userW     = "meya.user.entry.write"
	button    = "meya.button.event.click"
	form      = "meya.form.event.submit"
	mediaFlds = "data.url,data.filename,data.text"
	httpFlds  = "data.url,data.query,data.headers,data.body"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name  string
		e     *schemas.Entry
		app   AppSettings
		want  bool
		paths string // comma-separated; "" when not sensitive
	}{
		// Seed "Encrypted when" table: HTTP and WS entries, transport: true.
		{"http request transport on", entry(httpReq), on, true, httpFlds},
		{"http response transport on", entry(httpResp), on, true, httpFlds},
		{"http transport off", entry(httpReq), noTransp, false, ""},
		{"http transport on transcript off", entry(httpReq), noTransc, true, httpFlds},
		{"ws transport on", entry(wsMsg), on, true, "data.payload"},
		{"ws transport off", entry(wsMsg), noTransp, false, ""},
		{"ws agent mode transport off", entry(wsMsg, mode("agent")), noTransp, false, ""},
		// Events: transcript: true and thread.mode != bot.
		{"say bot mode", entry(say, mode("bot")), on, false, ""},
		{"say agent mode", entry(say, mode("agent")), on, true, "data.text"},
		{"say prechat mode", entry(say, mode("prechat")), on, true, "data.text"},
		{"say empty mode fails closed", entry(say, mode("")), on, true, "data.text"},
		{"say agent mode transcript off", entry(say, mode("agent")), noTransc, false, ""},
		{"say agent mode all off", entry(say, mode("agent")), allOff, false, ""},
		{"say agent mode transport off", entry(say, mode("agent")), noTransp, true, "data.text"},
		// User types in bot mode.
		{"say bot mode user", entry(say, userType("user")), on, false, ""},
		{"say bot mode bot user", entry(say, userType("bot")), on, false, ""},
		{"say bot mode agent user", entry(say, userType("agent")), on, true, "data.text"},
		{"say bot mode system user", entry(say, userType("system")), on, true, "data.text"},
		{"say bot mode agent user transcript off", entry(say, userType("agent")), noTransc, false, ""},
		// Fail closed on every value a rule reads (issue 12 item 5): only "user" and "bot" leave a
		// bot-mode ordinary event unflagged (or no user type at all); any other spelling or an
		// unknown user type flags it, and only "bot" exactly is bot mode.
		{"say bot mode user type Agent", entry(say, userType("Agent")), on, true, "data.text"},
		{"say bot mode user type AGENT", entry(say, userType("AGENT")), on, true, "data.text"},
		{"say bot mode user type agent with a space", entry(say, userType("agent ")), on, true, "data.text"},
		{"say bot mode user type System", entry(say, userType("System")), on, true, "data.text"},
		{"say bot mode user type User", entry(say, userType("User")), on, true, "data.text"},
		{"say bot mode user type Bot", entry(say, userType("Bot")), on, true, "data.text"},
		{"say bot mode no user type", entry(say, userType("")), on, false, ""},
		{"say bot mode user type unknown", entry(say, userType("customer")), on, true, "data.text"},
		{"say bot mode user type odd, transcript off", entry(say, userType("Agent")), noTransc, false, ""},
		{"typing bot mode user type Agent", entry(typing, userType("Agent")), on, true, "data.text"},
		{"flow step bot mode user type space", entry(flow, userType(" ")), on, true, "data.data"},
		{"say mode Bot", entry(say, mode("Bot")), on, true, "data.text"},
		{"say mode BOT", entry(say, mode("BOT")), on, true, "data.text"},
		{"say mode bot with a space", entry(say, mode("bot ")), on, true, "data.text"},
		{"say type odd casing fails closed", entry("Meya.Text.Event.Say"), on, true, "data"},
		{"button agent mode", entry(button, mode("agent")), on, true, "data.text,data.data"},
		{"form prechat mode", entry(form, mode("prechat")), on, true, "data.fields"},
		// Other event-rule ledgers.
		{"flow step bot mode", entry(flow), on, false, ""},
		{"flow step agent mode", entry(flow, mode("agent")), on, true, "data.data"},
		{"log agent mode", entry(logEntry, mode("agent")), on, true, "data.message,data.attributes"},
		{"log bot mode", entry(logEntry), on, false, ""},
		{"typing agent mode", entry(typing, mode("agent")), on, true, "data.text"},
		{"typing system user", entry(typing, userType("system")), on, true, "data.text"},
		{"thread write agent mode", entry(threadW, mode("agent")), on, true, "data.value"},
		{"thread write bot mode", entry(threadW), on, false, ""},
		{"user write prechat", entry(userW, mode("prechat")), on, true, "data.value"},
		{"user write bot mode", entry(userW), on, false, ""},
		// Media events: transcript: true.
		{"image bot mode", entry(image), on, true, mediaFlds},
		{"file bot mode", entry("meya.file.event"), on, true, mediaFlds},
		{"video bot mode", entry("meya.video.event"), on, true, mediaFlds},
		{"audio bot mode", entry("meya.audio.event"), on, true, mediaFlds},
		{"image transcript off", entry(image, mode("agent")), noTransc, false, ""},
		{"blob transcript on", entry(blob), on, true, "data.content,data.object,data.filename"},
		{"blob transcript off", entry(blob), noTransc, false, ""},
		{"blob transport off", entry(blob), noTransp, true, "data.content,data.object,data.filename"},
		// Component responses: transcript: true and component sensitive (default true).
		{"component sensitive nil", entry(comp, component(nil)), on, true, "data.result"},
		{"component absent", entry(comp, noComponent()), on, true, "data.result"},
		{"component sensitive true", entry(comp, component(ptr(true))), on, true, "data.result"},
		{"component sensitive false", entry(comp, component(ptr(false))), on, false, ""},
		{"component sensitive false agent mode", entry(comp, component(ptr(false)), mode("agent")), on, false, ""},
		{"component sensitive true transcript off", entry(comp, component(ptr(true))), noTransc, false, ""},
		// Trigger responses: the incoming event was sensitive.
		{"trigger sensitive true", entry(trig, trigger(true)), on, true, "data.result"},
		{"trigger sensitive false", entry(trig, trigger(false)), on, false, ""},
		{"trigger absent", entry(trig), on, false, ""},
		{"trigger sensitive false agent mode", entry(trig, trigger(false), mode("agent")), on, false, ""},
		{"trigger sensitive true transcript off", entry(trig, trigger(true)), noTransc, false, ""},
		// Explicit flags.
		{"explicit true bot mode", entry(say, sensitive(true)), on, true, "data.text"},
		{"explicit true transcript off", entry(say, sensitive(true)), noTransc, true, "data.text"},
		{"explicit true transport off", entry(httpReq, sensitive(true)), noTransp, true, httpFlds},
		{"explicit true component false", entry(comp, component(ptr(false)), sensitive(true)), on, true, "data.result"},
		{"explicit false agent mode not downgraded", entry(say, mode("agent"), sensitive(false)), on, true, "data.text"},
		{"explicit false http not downgraded", entry(httpReq, sensitive(false)), on, true, httpFlds},
		{"explicit false media not downgraded", entry(image, sensitive(false)), on, true, mediaFlds},
		{"explicit false component not downgraded", entry(comp, sensitive(false)), on, true, "data.result"},
		{"explicit false bot mode", entry(say, sensitive(false)), on, false, ""},
		// sensitive_paths.
		{"paths only in bot mode", entry(say, paths("data.email")), on, true, "data.email"},
		{"paths with transcript off", entry(say, paths("data.email"), mode("agent")), allOff, true, "data.email"},
		{"paths added to rule", entry(say, mode("prechat"), paths("data.email")), on, true, "data.text,data.email"},
		{"paths duplicate of registry", entry(say, mode("agent"), paths("data.text", "data.email", "data.email")), on, true, "data.text,data.email"},
		{"paths under registry field", entry(say, mode("agent"), paths("data.text.x")), on, true, "data.text"},
		{"paths covering registry fields", entry(button, mode("agent"), paths("data")), on, true, "data"},
		{"paths covering one registry field", entry(httpReq, paths("data.headers.auth", "data.query")), on, true, httpFlds},
		{"paths covering earlier path", entry(say, paths("data.a.b", "data.c", "data.a")), on, true, "data.a,data.c"},
		{"paths with explicit true", entry(say, sensitive(true), paths("data.email")), on, true, "data.text,data.email"},
		// Unknown types fail closed, whatever the settings.
		{"unknown type", entry("meya.custom.event"), on, true, "data"},
		{"unknown type all off", entry("meya.custom.event"), allOff, true, "data"},
		{"unknown type explicit false", entry("meya.custom.event", sensitive(false)), allOff, true, "data"},
		{"unknown type with paths", entry("meya.custom.event", paths("data.x")), on, true, "data"},
		{"unknown ledger", entry(say, ledger("nope")), allOff, true, "data"},
		// A type on a ledger other than its own: the ledger's rule applies.
		{"say on http ledger transport on", entry(say, ledger("http")), noTransc, true, "data.text"},
		{"http type on event ledger", entry(httpReq, ledger("event")), noTransp, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.e, tt.app, schemas.DefaultRegistry())
			var wantPaths []string
			if tt.paths != "" {
				wantPaths = strings.Split(tt.paths, ",")
			}
			if d.Sensitive != tt.want || !reflect.DeepEqual(d.Paths, wantPaths) && !(len(d.Paths) == 0 && len(wantPaths) == 0) {
				t.Errorf("Decide() = %v %q (%s), want %v %q", d.Sensitive, d.Paths, d.Reason, tt.want, wantPaths)
			}
			if d.Reason == "" {
				t.Errorf("Decide() reason is empty")
			}
			if strings.Contains(d.Reason, "secret") {
				t.Errorf("Decide() reason %q carries a value", d.Reason)
			}
		})
	}
}

func TestDecideReasonNamesUnknownType(t *testing.T) {
	d := Decide(entry("meya.custom.event"), on, nil)
	if d.Reason != "unknown type: whole data (fail closed)" {
		t.Errorf("Decide(unknown).Reason = %q", d.Reason)
	}
}

func TestDecideIsPure(t *testing.T) {
	e := entry(say, mode("agent"), paths("data.email"))
	before := *e
	d1 := Decide(e, on, nil)
	d1.Paths[0] = "changed"
	d2 := Decide(e, on, nil)
	if d2.Paths[0] != "data.text" {
		t.Errorf("Decide shares Paths between calls: %q", d2.Paths)
	}
	if !reflect.DeepEqual(*e, before) {
		t.Errorf("Decide changed the entry")
	}
	if info, _ := schemas.DefaultRegistry().Lookup(say); info.Fields[0] != "data.text" {
		t.Errorf("Decide changed the registry: %q", info.Fields)
	}
	u := Decide(entry("meya.custom.event"), on, nil)
	u.Paths[0] = "changed"
	if u2 := Decide(entry("meya.custom.event"), on, nil); u2.Paths[0] != "data" {
		t.Errorf("Decide shares the fail-closed Paths: %q", u2.Paths)
	}
}

func FuzzDecide(f *testing.F) {
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"event","type":"meya.text.event.say","ts":"2026-11-22T10:00:00Z","thread":{"mode":"bot"},"data":{"text":"x"}}`), true, true)
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"event","type":"meya.other","ts":"2026-11-22T10:00:00Z","sensitive":false}`), false, false)
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"http","type":"meya.http.entry.request","ts":"2026-11-22T10:00:00Z","sensitive":true,"sensitive_paths":["data.x","data"]}`), false, false)
	f.Add([]byte(`{"id":"e","app_id":"a","ledger":"event","type":"meya.component.entry.response","ts":"2026-11-22T10:00:00Z","component":{"sensitive":false},"trigger":{"sensitive":true}}`), true, false)
	f.Fuzz(func(t *testing.T, b []byte, transcript, transport bool) {
		e, err := schemas.Decode(b, schemas.Limits{MaxBytes: 64 << 10})
		if err != nil {
			return
		}
		reg := schemas.DefaultRegistry()
		d := Decide(e, AppSettings{Transcript: transcript, Transport: transport}, reg)
		if _, known := reg.Lookup(e.Type); !known && (!d.Sensitive || !reflect.DeepEqual(d.Paths, []string{"data"})) {
			t.Fatalf("unknown type %q: Decide = %v %q, want sensitive [data]", e.Type, d.Sensitive, d.Paths)
		}
		if e.Sensitive != nil && *e.Sensitive && !d.Sensitive {
			t.Fatalf("explicit sensitive: Decide = not sensitive (%s)", d.Reason)
		}
		if len(e.SensitivePaths) > 0 && !d.Sensitive {
			t.Fatalf("sensitive_paths set: Decide = not sensitive (%s)", d.Reason)
		}
		if d.Sensitive && len(d.Paths) == 0 {
			t.Fatalf("sensitive with no paths (%s)", d.Reason)
		}
		if !d.Sensitive && len(d.Paths) != 0 {
			t.Fatalf("not sensitive with paths %q", d.Paths)
		}
		for _, p := range e.SensitivePaths {
			if !coveredBy(p, d.Paths) {
				t.Fatalf("sensitive path %q not covered by %q", p, d.Paths)
			}
		}
		for i, p := range d.Paths {
			for j, q := range d.Paths {
				if i != j && schemas.CoversString(p, q) {
					t.Fatalf("paths %q: %q covers %q", d.Paths, p, q)
				}
			}
		}
		// sensitive: false never lowers the decision.
		if e.Sensitive != nil && !*e.Sensitive {
			e2 := *e
			e2.Sensitive = nil
			if d2 := Decide(&e2, AppSettings{Transcript: transcript, Transport: transport}, reg); d2.Sensitive != d.Sensitive {
				t.Fatalf("sensitive: false changed the decision: %v vs %v", d.Sensitive, d2.Sensitive)
			}
		}
	})
}

func coveredBy(p string, paths []string) bool {
	for _, q := range paths {
		if schemas.CoversString(q, p) {
			return true
		}
	}
	return false
}
