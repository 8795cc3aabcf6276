package reveal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-project/veil/reveal"
	"github.com/veil-project/veil/sinks/blob"
)

// TestOpenAPI checks reveal/openapi.json against the real handlers, both ways: every path the
// Handler routes is described; every documented (path, method, status) is provoked here on real
// components and answers as documented; every response is checked against its schema (fields,
// required fields, no undocumented fields, enums) and its documented headers; no scenario
// answers a status the document does not list. GET /v1/openapi.json serves the document.
func TestOpenAPI(t *testing.T) {
	var spec map[string]any
	if err := json.Unmarshal(reveal.OpenAPI, &spec); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if v, _ := spec["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi = %q, want 3.x", v)
	}
	paths := spec["paths"].(map[string]any)

	// Every path the handler routes is in the document.
	for _, p := range handlerPaths(t) {
		if _, ok := paths[p]; !ok {
			t.Errorf("the handler serves %s; openapi.json does not describe it", p)
		}
	}

	// Real components: kfake audit, local KMS, Badger, a blob directory.
	e := newEnv(t)
	svc, objects := e.blobService()
	mediaTok := e.sealBlob(svc, 9, strings.NewReader("media bytes"))
	support := newPrincipal(t, "support-a", reveal.KindSupport, false, "app-a")
	other := newPrincipal(t, "support-b", reveal.KindSupport, false, "app-b")
	ps := principalSet(t, support, other)
	expiring := e.seal("app-a", time.Minute, `"soon gone"`)[0]
	e.clock.Advance(2 * time.Minute)
	okTok := e.seal("app-a", time.Hour, `{"email":"jane@example.com"}`)[0]
	deniedTok := e.seal("app-b", time.Hour, `"other app"`)[0]
	base := e.serve(reveal.ServerConfig{Principals: ps, Blobs: svc})
	noBlobs := e.serve(reveal.ServerConfig{Principals: ps})
	limited := e.serve(reveal.ServerConfig{Principals: ps, Blobs: svc, RatePerSecond: 0.001, Burst: 1})

	// A closed auditor and a closed store: the outages behind 503.
	deadAudit, err := reveal.DialKafkaAuditor(e.addrs)
	if err != nil {
		t.Fatal(err)
	}
	deadAudit.Close(context.Background())
	deadSvc, err := blob.New(blob.Config{Objects: objects, Store: e.store, Sealer: e.sealer, Now: e.clock.Now,
		Audit: reveal.LinkAudit(deadAudit, e.clock.Now)})
	if err != nil {
		t.Fatal(err)
	}
	deadAuditBase := e.serve(reveal.ServerConfig{Principals: ps, Blobs: deadSvc, Auditor: deadAudit})
	down := newEnv(t)
	downTok := down.seal("app-a", time.Hour, `"x"`)[0]
	down.store.Close(context.Background())
	downBase := down.serve(reveal.ServerConfig{Principals: ps})

	do := func(method, url string, p *principal, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if p != nil {
			req.Header.Set("Authorization", "Bearer "+string(p.key))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tokens := func(ts ...string) string {
		b, _ := json.Marshal(map[string][]string{"tokens": ts})
		return string(b)
	}
	link := func(p *principal, body string) *http.Response {
		return do(http.MethodPost, base+"/v1/blobs/link", p, body)
	}
	signed := func(s *blob.Service, ttl time.Duration) string {
		t.Helper()
		u, _, err := s.Link(mediaTok.Encode(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	many := make([]string, reveal.DefaultMaxTokens+1)
	for i := range many {
		many[i] = okTok.Encode()
	}
	expiredLink := signed(svc, time.Second)
	e.clock.Advance(2 * time.Second)

	type scenario struct {
		name string
		call func() *http.Response
		// check looks at the decoded JSON body beyond the schema (nil: nothing more).
		check func(t *testing.T, body any)
	}
	scenarios := map[string][]scenario{
		"POST /v1/reveal 200": {{"one token of each status", func() *http.Response {
			return do(http.MethodPost, base+"/v1/reveal", &support, tokens(okTok.Encode(), expiring.Encode(), deniedTok.Encode(), "veil:v1:nope"))
		}, func(t *testing.T, body any) {
			var got []string
			for _, r := range body.(map[string]any)["results"].([]any) {
				got = append(got, r.(map[string]any)["status"].(string))
			}
			if want := []string{"ok", "expired", "denied", "invalid"}; !slices.Equal(got, want) {
				t.Errorf("statuses = %v, want %v (every value of the Result.status enum)", got, want)
			}
		}}},
		"POST /v1/reveal 400": {
			{"not JSON", func() *http.Response { return do(http.MethodPost, base+"/v1/reveal", &support, "{") }, nil},
			{"a field RevealRequest lacks (additionalProperties: false)", func() *http.Response {
				return do(http.MethodPost, base+"/v1/reveal", &support, `{"tokens":["veil:v1:x"],"extra":1}`)
			}, nil},
			{"no tokens (minItems 1)", func() *http.Response { return do(http.MethodPost, base+"/v1/reveal", &support, tokens()) }, nil},
		},
		"POST /v1/reveal 401": {
			{"no key", func() *http.Response { return do(http.MethodPost, base+"/v1/reveal", nil, tokens(okTok.Encode())) }, nil},
		},
		"POST /v1/reveal 405": {{"GET", func() *http.Response { return do(http.MethodGet, base+"/v1/reveal", &support, "") }, nil}},
		"POST /v1/reveal 413": {
			{"more than maxItems tokens", func() *http.Response { return do(http.MethodPost, base+"/v1/reveal", &support, tokens(many...)) }, nil},
			{"a body over 1 MiB", func() *http.Response {
				return do(http.MethodPost, base+"/v1/reveal", &support, tokens(strings.Repeat("x", reveal.DefaultMaxBodyBytes)))
			}, nil},
		},
		"POST /v1/reveal 429": {{"burst used up", func() *http.Response {
			do(http.MethodPost, limited+"/v1/reveal", &support, tokens(okTok.Encode())).Body.Close()
			return do(http.MethodPost, limited+"/v1/reveal", &support, tokens(okTok.Encode()))
		}, nil}},
		"POST /v1/reveal 503": {{"store down", func() *http.Response {
			return do(http.MethodPost, downBase+"/v1/reveal", &support, tokens(downTok.Encode()))
		}, nil}},
		"POST /v1/blobs/link 200": {{"support of the app", func() *http.Response {
			return link(&support, fmt.Sprintf(`{"token":%q,"ttl_seconds":60}`, mediaTok.Encode()))
		}, nil}},
		"POST /v1/blobs/link 400": {
			{"not JSON", func() *http.Response { return link(&support, "{") }, nil},
			{"ttl over maximum", func() *http.Response {
				return link(&support, fmt.Sprintf(`{"token":%q,"ttl_seconds":3601}`, mediaTok.Encode()))
			}, nil},
			{"not a token", func() *http.Response { return link(&support, `{"token":"nope"}`) }, nil},
		},
		"POST /v1/blobs/link 401": {{"no key", func() *http.Response { return link(nil, `{"token":"x"}`) }, nil}},
		"POST /v1/blobs/link 403": {{"another app's principal", func() *http.Response {
			return link(&other, fmt.Sprintf(`{"token":%q}`, mediaTok.Encode()))
		}, nil}},
		"POST /v1/blobs/link 404": {{"no blob store", func() *http.Response {
			return do(http.MethodPost, noBlobs+"/v1/blobs/link", &support, fmt.Sprintf(`{"token":%q}`, mediaTok.Encode()))
		}, nil}},
		"POST /v1/blobs/link 405": {{"GET", func() *http.Response { return do(http.MethodGet, base+"/v1/blobs/link", &support, "") }, nil}},
		"POST /v1/blobs/link 429": {{"burst used up", func() *http.Response {
			do(http.MethodPost, limited+"/v1/blobs/link", &support, "{}").Body.Close()
			return do(http.MethodPost, limited+"/v1/blobs/link", &support, "{}")
		}, nil}},
		"POST /v1/blobs/link 503": {{"audit down", func() *http.Response {
			return do(http.MethodPost, deadAuditBase+"/v1/blobs/link", &support, fmt.Sprintf(`{"token":%q}`, mediaTok.Encode()))
		}, nil}},
		"GET /v1/blobs/{link} 200": {{"a fresh link", func() *http.Response { return do(http.MethodGet, base+signed(svc, time.Minute), nil, "") }, nil}},
		"GET /v1/blobs/{link} 403": {{"not signed by veil", func() *http.Response { return do(http.MethodGet, base+"/v1/blobs/forged", nil, "") }, nil}},
		"GET /v1/blobs/{link} 405": {{"POST", func() *http.Response { return do(http.MethodPost, base+signed(svc, time.Minute), nil, "") }, nil}},
		"GET /v1/blobs/{link} 410": {{"expired link", func() *http.Response { return do(http.MethodGet, base+expiredLink, nil, "") }, nil}},
		"GET /v1/blobs/{link} 503": {{"audit down", func() *http.Response {
			return do(http.MethodGet, deadAuditBase+signed(deadSvc, time.Minute), nil, "")
		}, nil}},
		"GET /healthz 200": {{"up", func() *http.Response { return do(http.MethodGet, base+"/healthz", nil, "") }, nil}},
		"GET /healthz 405": {{"POST", func() *http.Response { return do(http.MethodPost, base+"/healthz", nil, "") }, nil}},
		"GET /v1/openapi.json 200": {{"the document", func() *http.Response { return do(http.MethodGet, base+"/v1/openapi.json", nil, "") }, func(t *testing.T, body any) {
			b, _ := json.Marshal(body)
			if !jsonSame(b, reveal.OpenAPI) {
				t.Error("GET /v1/openapi.json does not serve reveal.OpenAPI")
			}
		}}},
		"GET /v1/openapi.json 405": {{"POST", func() *http.Response { return do(http.MethodPost, base+"/v1/openapi.json", nil, "") }, nil}},
	}

	documented := map[string]bool{}
	for path, item := range paths {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			for status := range op.(map[string]any)["responses"].(map[string]any) {
				documented[strings.ToUpper(method)+" "+path+" "+status] = true
			}
		}
	}
	for _, key := range slices.Sorted(mapKeys(documented)) {
		if len(scenarios[key]) == 0 {
			t.Errorf("%s is documented but no scenario here provokes it", key)
		}
	}
	for _, key := range slices.Sorted(mapKeys(scenarios)) {
		f := strings.Fields(key)
		method, path, status := f[0], f[1], f[2]
		for _, sc := range scenarios[key] {
			t.Run(key+"/"+sc.name, func(t *testing.T) {
				resp := sc.call()
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				got := strconv.Itoa(resp.StatusCode)
				if !documented[method+" "+path+" "+got] {
					t.Fatalf("answered %s, which openapi.json does not document for %s %s (body %s)", got, method, path, raw)
				}
				if got != status {
					t.Fatalf("answered %s, want %s (body %s)", got, status, raw)
				}
				op := paths[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
				r := resolve(spec, op["responses"].(map[string]any)[status])
				for h := range mapOr(r["headers"]) {
					if resp.Header.Get(h) == "" {
						t.Errorf("documented header %s missing", h)
					}
				}
				content := mapOr(r["content"])
				ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
				media, ok := content[ct]
				if !ok {
					t.Fatalf("Content-Type %q is not one documented (%v)", ct, slices.Collect(mapKeysAny(content)))
				}
				if ct != "application/json" {
					return
				}
				var body any
				if err := json.Unmarshal(raw, &body); err != nil {
					t.Fatalf("body is not JSON: %s", raw)
				}
				for _, p := range validate(spec, mapOr(media)["schema"], body, "body") {
					t.Error(p)
				}
				if sc.check != nil {
					sc.check(t, body)
				}
			})
		}
	}
}

// handlerPaths reads the paths Server.Handler routes from server.go: the string cases of its
// switch, and the signed-link prefix as /v1/blobs/{link}. Reading the source is the only way to
// list what a switch routes; the console UI (/console/…) is not part of the API.
func handlerPaths(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "server.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Handler" {
			continue
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						p, _ := strconv.Unquote(lit.Value)
						if strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "/console") {
							out = append(out, p)
						}
					}
				}
			}
			return true
		})
	}
	if len(out) == 0 {
		t.Fatal("found no routes in Server.Handler")
	}
	return append(out, "/v1/blobs/{link}")
}

// resolve follows a $ref within the document.
func resolve(spec map[string]any, v any) map[string]any {
	m := mapOr(v)
	for {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var cur any = spec
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = mapOr(cur)[part]
		}
		m = mapOr(cur)
	}
}

// validate checks v against the subset of JSON Schema the document uses: type, properties,
// required, additionalProperties false, items, enum, minItems/maxItems, format date-time.
func validate(spec map[string]any, schema any, v any, at string) []string {
	s := resolve(spec, schema)
	var errs []string
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		errs = append(errs, fmt.Sprintf("%s = %v, not one of %v", at, v, enum))
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s is not an object", at))
		}
		props := mapOr(s["properties"])
		for _, r := range sliceOr(s["required"]) {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s lacks required %s", at, r))
			}
		}
		for k, fv := range m {
			ps, ok := props[k]
			if !ok {
				if s["additionalProperties"] == false {
					errs = append(errs, fmt.Sprintf("%s has undocumented field %s", at, k))
				}
				continue
			}
			errs = append(errs, validate(spec, ps, fv, at+"."+k)...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s is not an array", at))
		}
		for i, e := range a {
			errs = append(errs, validate(spec, s["items"], e, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return append(errs, fmt.Sprintf("%s is not a string", at))
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s is not a date-time", at))
			}
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			errs = append(errs, fmt.Sprintf("%s is not an integer", at))
		}
	}
	return errs
}

func mapOr(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func sliceOr(v any) []any {
	s, _ := v.([]any)
	return s
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func mapKeysAny(m map[string]any) func(func(string) bool) { return mapKeys(m) }

func jsonSame(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
