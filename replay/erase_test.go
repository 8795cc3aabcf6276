package replay_test

import (
	"strings"
	"testing"

	"github.com/veil-project/veil/broker"
	"github.com/veil-project/veil/replay"
)

// TestReplayAfterErasure: an app erased (its keys destroyed, its rows deleted) after veil
// processed its entries. Replay must neither fail on its entries nor seal them again under new
// keys (that would bring erased data back): they are skipped.
func TestReplayAfterErasure(t *testing.T) {
	e := newEnv(t)
	traffic(e, 10) // app-1: 5 event + 2 bot (past TTL), app-2: 5 event
	e.runPipeline(12)
	// The outputs are lost; then app-2 is erased.
	e.truncate(broker.EncryptedTopic("event"), broker.EncryptedTopic("bot"), broker.RedactedTopic("event"), broker.RedactedTopic("bot"))
	if _, err := e.kr.EraseApp(ctx, "app-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.DeleteApp(ctx, "app-2"); err != nil {
		t.Fatal(err)
	}
	keys, err := e.kr.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config(replay.TargetEncrypted, replay.TargetRedacted)
	cfg.Erased = replay.ErasedApps(keys)
	res, err := replay.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run after erasing app-2 = %+v, %v", res, err)
	}
	// app-1's 5 live entries are already sealed (their refs are in the store): only their
	// redacted outputs and the 2 past-TTL bot entries come back.
	if res.Erased != 5 || res.Sealed != 5 || res.Encrypted != 2 || res.Redacted != 7 || res.Stored != 0 {
		t.Errorf("Run after erasing app-2 = %+v, want app-2's 5 records skipped as erased, app-1's 7 replayed", res)
	}
	for _, r := range e.readAll(broker.EncryptedTopic("event")) {
		if strings.Contains(string(r.Value), `"app_id":"app-2"`) {
			t.Errorf("replay sealed an erased app's entry again: %s", header(r, "veil-source"))
		}
	}
	for _, r := range e.readAll(broker.RedactedTopic("event")) {
		if strings.Contains(string(r.Value), `"app_id":"app-2"`) {
			t.Errorf("replay republished an erased app's entry: %s", header(r, "veil-source"))
		}
	}
}
