package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// checkpoint is the on-disk progress of a replay: the last processed offset of each source
// partition ("topic/partition"), for one window.
type checkpoint struct {
	Version int              `json:"v"`
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	Done    map[string]int64 `json:"done"`
}

func partKey(topic string, p int32) string { return fmt.Sprintf("%s/%d", topic, p) }

// loadCheckpoint reads path; a missing file is an empty checkpoint for the window.
func loadCheckpoint(path string, from, to time.Time) (*checkpoint, error) {
	cp := &checkpoint{Version: 1, From: from.UTC(), To: to.UTC(), Done: map[string]int64{}}
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
	if !got.From.Equal(cp.From) || !got.To.Equal(cp.To) {
		return nil, badArgs("checkpoint %s is for the window %s to %s; use another file or the same window",
			path, got.From.Format(time.RFC3339), got.To.Format(time.RFC3339))
	}
	if got.Done != nil {
		cp.Done = got.Done
	}
	return cp, nil
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
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".replay-checkpoint-*")
	if err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("writing checkpoint: %w", werr)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
