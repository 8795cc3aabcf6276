package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/veil-project/veil/internal/atomicfile"
)

// checkpoint is the on-disk progress of a replay: the last processed offset of each source
// partition ("topic/partition"), for one window, ledger list, target list and app.
type checkpoint struct {
	Version int              `json:"v"`
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	Ledgers []string         `json:"ledgers,omitempty"`
	Targets []Target         `json:"targets,omitempty"`
	App     string           `json:"app,omitempty"`
	Done    map[string]int64 `json:"done"`
}

func partKey(topic string, p int32) string { return fmt.Sprintf("%s/%d", topic, p) }

// loadCheckpoint reads path; a missing file is an empty checkpoint for cfg. Resuming takes the
// window of the file when cfg.To is zero (the same command run again, --to left out), and
// accepts a cfg.To equal to the file's to the second (the time as printed); it refuses another
// window, ledger list, target list or app, whose offsets would not mean the same. A file written
// before the ledgers, targets and app were recorded is checked on its window only.
func loadCheckpoint(path string, cfg *Config) (*checkpoint, error) {
	ledgers := slices.Sorted(slices.Values(cfg.Ledgers))
	cp := &checkpoint{Version: 1, From: cfg.From.UTC(), To: cfg.To.UTC(), Ledgers: ledgers, Targets: cfg.Targets, App: cfg.App, Done: map[string]int64{}}
	if path == "" {
		return cp, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	var got checkpoint
	if err := json.Unmarshal(b, &got); err != nil || got.Version != 1 {
		return nil, badArgs("checkpoint %s is not a replay checkpoint", path)
	}
	sameTo := cfg.To.IsZero() || cfg.To.Unix() == got.To.Unix()
	if !got.From.Equal(cp.From) || !sameTo {
		return nil, badArgs("checkpoint %s is for the window --from %s --to %s; run the same command (--to may be left out) or use another file",
			path, stamp(got.From), got.To.UTC().Format(time.RFC3339))
	}
	if got.Ledgers != nil && !slices.Equal(got.Ledgers, ledgers) ||
		got.Targets != nil && !slices.Equal(got.Targets, cfg.Targets) || got.Ledgers != nil && got.App != cfg.App {
		return nil, badArgs("checkpoint %s is for --ledger %s --target %s --app %q; run the same command or use another file",
			path, strings.Join(got.Ledgers, ","), joinTargets(got.Targets), got.App)
	}
	cfg.To = got.To
	cp.To = got.To
	if got.Done != nil {
		cp.Done = got.Done
	}
	return cp, nil
}

func joinTargets(ts []Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
}

// save writes the checkpoint atomically: a synced temp file renamed over path.
func (cp *checkpoint) save(path string) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	return nil
}
