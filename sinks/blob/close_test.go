package blob

import (
	"context"
	"testing"
)

// TestServiceCloseTwice: with a staging directory (an os.Root, whose second Close fails), a
// second Close returns the first one's result.
func TestServiceCloseTwice(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.StagingDir = t.TempDir() })
	for i := range 2 {
		if err := e.svc.Close(context.Background()); err != nil {
			t.Errorf("Close #%d = %v, want nil", i+1, err)
		}
	}
}
