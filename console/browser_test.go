package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/chromedp"
)

// chromium finds the browser: $VEIL_CHROMIUM, or Debian's chromium (scripts/test-deps.sh
// installs it).
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("VEIL_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("no chromium: run scripts/test-deps.sh (make test installs it)")
	return ""
}

// css finds elements by CSS selector (querySelectorAll).
func css(sel string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		res, err := cdp.Call(ctx, t, dom.QuerySelectorAll, dom.QuerySelectorAllParams{NodeID: n.NodeID, Selector: sel})
		return res.NodeIDs, err
	})
}

type step = chromedp.Action[chromedp.Void]

// click clicks what sel finds and waits for the page it navigates to: a marker set on the old
// page must be gone and the new one loaded, so no later step reads the page being left.
func click(sel string) step {
	return chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](`window.__veilOld = 1`),
		chromedp.Click(sel, css(sel)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			for {
				// Evaluating while the page navigates fails; that is the expected transition.
				done, err := chromedp.Evaluate[bool](`window.__veilOld === undefined && document.readyState === 'complete'`)(ctx, tg)
				if err == nil && done {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
		}),
	)
}

// artifacts is where screenshots go: $VEIL_TEST_ARTIFACTS, or the test's temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("VEIL_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// TestBrowser drives the console in headless Chromium: sign in, filter, open a thread, reveal a
// value (one audit record), hostile entries render as text, ★★★★★ after the TTL and after
// erasure, a cross-site POST refused, app isolation, sign out.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	shots := artifacts(t)
	e := newEnv(t)
	now := e.clock.Now()
	hostile := `<script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">`
	bot := say("e-hostile-clear", "app-a", "t-h", "u-9", hostile, now.Add(-3*time.Minute))
	bot.Thread["mode"] = "bot" // not sensitive: its text is shown as is
	e.publish(
		say("e-1", "app-a", "t-1", "u-1", "my card is canary-4711", now.Add(-5*time.Minute)),
		say("e-2", "app-a", "t-1", "u-2", "agent answer", now.Add(-4*time.Minute)),
		bot,
		say("e-hostile-sealed", "app-a", "t-h", "u-9", hostile, now.Add(-2*time.Minute)),
		say("e-b", "app-b", "t-b", "u-b", "secret-of-b", now.Add(-1*time.Minute)),
	)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // starts the browser under bctx, not a step's timeout
		t.Fatalf("starting chromium: %v", err)
	}

	base := e.srv.URL
	shot := func(name string) step {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	run := func(what string, actions ...step) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			if buf, serr := chromedp.Run(bctx, chromedp.FullScreenshot(100)); serr == nil {
				os.WriteFile(filepath.Join(shots, "failed.png"), buf, 0o644)
			}
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML("html", css("html")))
			t.Fatalf("%s: %v (screenshot failed.png)\n%s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel, css(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`))
		if err != nil {
			t.Fatalf("counting %s: %v", sel, err)
		}
		return n
	}
	signIn := func(name string) {
		t.Helper()
		run("sign in as "+name,
			chromedp.Navigate(base+"/console/signin"),
			chromedp.WaitVisible("#key", css("#key")),
			chromedp.SendKeys("#key", string(e.keys[name]), css("#key")),
			click("#signin"),
			chromedp.WaitVisible("#summary", css("#summary")),
		)
	}
	// untouched checks that nothing an entry holds ran as script or became markup.
	untouched := func(where string) {
		t.Helper()
		title, err := chromedp.Run(bctx, chromedp.Title())
		if err != nil {
			t.Fatal(err)
		}
		injected := count("main img, main script, main b")
		if strings.Contains(title, "pwned") || injected != 0 {
			t.Fatalf("%s: hostile entry ran or became markup (title %q, %d injected elements)", where, title, injected)
		}
	}

	// Sign-in page.
	run("sign-in page", chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible("#key", css("#key")), shot("01-signin"))
	signIn("alice")
	body := text("main")
	if !strings.Contains(body, "e-1") || !strings.Contains(body, "e-hostile-clear") || strings.Contains(body, "canary-4711") {
		t.Fatalf("logs page: entries missing or value shown before reveal:\n%s", body)
	}
	if strings.Contains(body, "e-b") || strings.Contains(body, "secret-of-b") || strings.Contains(body, "app-b") {
		t.Fatal("alice (app-a) sees app-b")
	}
	if !strings.Contains(body, "<script>document.title") {
		t.Fatal("the hostile text is not shown as text")
	}
	untouched("logs page")
	run("logs screenshot", shot("02-logs"))

	// Filter by thread.
	run("filter",
		chromedp.SendKeys("#f-thread", "t-1", css("#f-thread")),
		click("#apply"),
		chromedp.WaitVisible("#summary", css("#summary")),
	)
	if s := text("#summary"); !strings.HasPrefix(s, "2 entries") {
		t.Fatalf("filtered by thread t-1: %q", s)
	}
	run("filtered screenshot", shot("03-filtered"))

	// Thread view, in order.
	run("open thread", click(`#entry-e-1 a.thread`), chromedp.WaitVisible("#summary", css("#summary")))
	body = text("main")
	if i, j := strings.Index(body, "e-1"), strings.Index(body, "e-2"); i < 0 || j < 0 || i > j {
		t.Fatalf("thread view out of order:\n%s", body)
	}
	run("thread screenshot", shot("04-thread"))

	// Reveal one value: the canary appears, one audit record.
	run("reveal", click(`#entry-e-1 button.reveal`), chromedp.WaitVisible(".revealed-value", css(".revealed-value")))
	if s := text(".revealed-value"); s != "my card is canary-4711" {
		t.Fatalf("revealed value = %q", s)
	}
	run("revealed screenshot", shot("05-revealed"))
	recs := e.auditRecords()
	if len(recs) != 1 || recs[0].Principal != "alice" || recs[0].Status != "ok" || recs[0].Source != "console" {
		t.Fatalf("audit after one reveal = %+v", recs)
	}

	// Reveal the hostile sealed value: shown as text, runs nothing.
	run("hostile reveal",
		chromedp.Navigate(base+"/console/logs?thread=t-h"), chromedp.WaitVisible("#summary", css("#summary")),
		click(`#entry-e-hostile-sealed button.reveal-all`),
		chromedp.WaitVisible(".revealed-value", css(".revealed-value")),
	)
	if s := text(".revealed-value"); s != hostile {
		t.Fatalf("hostile value shown as %q", s)
	}
	untouched("revealed hostile value")
	run("hostile screenshot", shot("06-hostile"))

	// A cross-site form post (from another origin, no CSRF token) is refused, and nothing is
	// revealed or audited.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/reveal">
<input name="l" value="event"><input name="p" value="0"><input name="o" value="0"><input name="f" value="all"></form>
<script>document.getElementById('f').submit()</script>`, base)
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site
	run("cross-site post", chromedp.Navigate(evilURL), chromedp.WaitVisible("#error", css("#error")))
	if s := text("#error"); !strings.Contains(s, "refused") && !strings.Contains(s, "not signed in") {
		t.Fatalf("cross-site post answered %q", s)
	}
	run("cross-site screenshot", shot("07-cross-site"))
	if n := len(e.auditRecords()); n != 2 {
		t.Fatalf("audit records = %d after the cross-site post, want 2 (the two reveals)", n)
	}

	// Past the TTL (injected clock): ★★★★★ with the reason, no Reveal.
	e.clock.Advance(25 * time.Hour)
	signIn("alice") // the session idled out meanwhile
	body = text("main")
	reveals := count("button.reveal, button.reveal-all")
	if !strings.Contains(body, "★★★★★") || !strings.Contains(body, "past its TTL") || reveals != 0 || strings.Contains(body, "canary-4711") {
		t.Fatalf("past the TTL: %d Reveal buttons\n%s", reveals, body)
	}
	run("expired screenshot", shot("08-expired"))

	// After erasure (keys destroyed, rows deleted), back within the TTL.
	e.clock.Advance(-25 * time.Hour)
	signIn("alice")
	reveals = count("button.reveal")
	if reveals == 0 {
		t.Fatal("no Reveal within the TTL")
	}
	if _, err := e.kr.EraseApp(ctx, "app-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.DeleteApp(ctx, "app-a"); err != nil {
		t.Fatal(err)
	}
	run("reload", chromedp.Reload(), chromedp.WaitVisible("#summary", css("#summary")))
	reveals = count("button.reveal, button.reveal-all")
	if body = text("main"); reveals != 0 || !strings.Contains(body, "erased") {
		t.Fatalf("after erasure: %d Reveal buttons\n%s", reveals, body)
	}
	run("erased screenshot", shot("09-erased"))

	// Sign out: back to the sign-in page, and the logs are closed.
	run("sign out", click("#signout"), chromedp.WaitVisible("#key", css("#key")),
		chromedp.Navigate(base+"/console/logs"), chromedp.WaitVisible("#key", css("#key")))

	// Bob (app-b) never sees app-a.
	signIn("bob")
	body = text("main")
	if !strings.Contains(body, "e-b") || strings.Contains(body, "e-1") || strings.Contains(body, "app-a") {
		t.Fatalf("bob's logs:\n%s", body)
	}
	run("bob screenshot", shot("10-bob"))
	for _, page := range []string{"status", "deadletters", "audit"} {
		run(page, chromedp.Navigate(base+"/console/"+page), chromedp.WaitVisible("main h1", css("main h1")), shot("11-"+page))
	}
	// Nothing an entry, a reveal or a sign-in held reached the logs.
	logged := e.logs.String()
	for _, secret := range []string{"canary-4711", "secret-of-b", "pwned", "veil:v1:", string(e.keys["alice"]), string(e.keys["bob"])} {
		if strings.Contains(logged, secret) {
			t.Errorf("the logs hold %.12q", secret)
		}
	}
	if !strings.Contains(logged, "console reveal") {
		t.Error("the console logged no reveal: is the logger wired?")
	}

	// Some traffic for the Status page's charts, sampled every 20 ms.
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); e.con.Run(sctx, 20*time.Millisecond) }()
	for i := range 30 {
		for _, l := range []string{"event", "log"} {
			e.metrics.EntriesIn.WithLabelValues(l).Add(float64(50 + 10*(i%7)))
			e.metrics.EntriesOut.WithLabelValues(l, "encrypted").Add(float64(48 + 10*(i%7)))
		}
		e.metrics.DeadLettered.WithLabelValues("malformed_json").Add(float64(i % 3))
		e.metrics.SealSeconds.Observe(float64(20+i%5) * 1e-6)
		e.metrics.SetLag("ledger.event", 0, int64(100-3*i))
		time.Sleep(25 * time.Millisecond)
	}
	stopSampling()
	<-sampled
	signIn("root")
	run("status", chromedp.Navigate(base+"/console/status"), chromedp.WaitVisible("main h1", css("main h1")))
	if n := count("svg polyline"); n < 5 {
		t.Errorf("status charts: %d lines, want 5", n)
	}
	for _, page := range []string{"status", "audit"} {
		run(page, chromedp.Navigate(base+"/console/"+page), chromedp.WaitVisible("main h1", css("main h1")), shot("12-root-"+page))
	}
}
