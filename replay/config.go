package replay

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/veil-project/veil/crypto/keyring"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/sinks/store"
)

// ErrBadArgs is returned by Run, ParseTargets and ParseTime when the request itself is wrong (a
// window that ends before it starts, an unknown target, a negative rate); nothing was done.
var ErrBadArgs = errors.New("replay: bad arguments")

func badArgs(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadArgs, fmt.Sprintf(format, args...))
}

// Target is an output replay can rebuild.
type Target string

// Targets.
const (
	TargetEncrypted Target = "encrypted" // encrypted.<ledger> and the encrypted store
	TargetRedacted  Target = "redacted"  // redacted.<ledger>
	TargetAnalytics Target = "analytics" // redacted.<ledger>, then the analytics group moved back
	TargetEgress    Target = "egress"    // encrypted.<ledger>, then the egress groups moved back
)

// AllTargets lists every target, in the order "all" expands to.
var AllTargets = []Target{TargetEncrypted, TargetRedacted, TargetAnalytics, TargetEgress}

// ParseTargets parses a comma-separated list of targets; "all" means AllTargets.
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "all":
			out = append(out, AllTargets...)
		case slices.Contains(AllTargets, Target(f)):
			out = append(out, Target(f))
		default:
			return nil, badArgs("unknown target %q (want redacted, encrypted, analytics, egress or all)", f)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseTime parses an RFC 3339 timestamp.
func ParseTime(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badArgs("%s %q is not an RFC 3339 timestamp (like 2026-11-22T10:00:00Z)", name, s)
	}
	return t, nil
}

// Defaults of the zero values of Config.
const (
	DefaultTransactionalID = "veil-replay"
	DefaultAnalyticsGroup  = "veil-analytics"
	DefaultPipelineGroup   = "veil"
	DefaultBatchSize       = 500
	DefaultOutputSlack     = time.Hour
)

// Config configures Run. Zero values are the documented defaults.
type Config struct {
	Brokers   []string
	KafkaOpts []kgo.Opt

	Ledgers []string  // ledger names to replay; required
	From    time.Time // first raw record timestamp replayed; required, not in the future
	// To is the last raw record timestamp replayed, not before From and not in the future. Zero:
	// the window of the checkpoint being resumed, else now.
	To      time.Time
	App     string   // only entries of this app; empty: every app
	Targets []Target // required

	// DryRun counts what would be produced; it produces, stores and moves back nothing. With a
	// Store it looks refs up to count those already sealed; without one it cannot tell them.
	DryRun bool
	Rate   float64 // most source records read per second; 0: unlimited

	// Checkpoint is the file that records progress; empty: none. Resuming needs the same window,
	// ledgers, targets and app; To may be left zero to take the checkpoint's.
	Checkpoint string

	Transformer *pipeline.Transformer // the pipeline's transformer; required
	Store       store.Store           // the encrypted store; required for the encrypted and egress targets unless DryRun

	// Erased maps an erased app (keyring tombstones) to the end of its latest erased key period:
	// its records timestamped before that are skipped (Result.Erased), so that replay never
	// seals erased data again under the fresh key the app gets after an erasure, nor republishes
	// its redacted view. Use ErasedApps to build it. Nil: no app was erased.
	Erased map[string]time.Time

	// PipelineGroup is the pipeline's consumer group (kafka.group); default DefaultPipelineGroup.
	// Replay covers only raw records this group has committed.
	PipelineGroup string

	TransactionalID string        // default DefaultTransactionalID; one replay at a time per id
	AnalyticsGroup  string        // default DefaultAnalyticsGroup
	EgressGroups    []string      // consumer groups of the egress stages; required for TargetEgress
	OutputSlack     time.Duration // how far before From output topics are read for dedupe; default 1h
	BatchSize       int           // outputs per transaction; default 500

	Progress         io.Writer        // progress lines; nil: none
	ProgressInterval time.Duration    // default 1s
	OnRecord         func(Progress)   // called after every source record (tests stop a run with it)
	Clock            func() time.Time // default time.Now
}

func (c *Config) validate() error {
	switch {
	case len(c.Ledgers) == 0:
		return badArgs("no ledger")
	case c.From.IsZero():
		return badArgs("--from is required")
	case len(c.Targets) == 0:
		return badArgs("no target")
	case c.Rate < 0:
		return badArgs("--rate must be positive")
	case c.Transformer == nil:
		return errors.New("replay: no transformer")
	case c.wantEncrypted() && c.Store == nil && !c.DryRun:
		return errors.New("replay: no store (the encrypted and egress targets write to it)")
	case c.has(TargetEgress) && len(c.EgressGroups) == 0:
		return badArgs("target egress needs the egress consumer groups (--egress-group)")
	}
	if c.App != "" {
		if err := store.ValidateApp(c.App); err != nil {
			return badArgs("--app is not a valid app id")
		}
	}
	for _, t := range c.Targets {
		if !slices.Contains(AllTargets, t) {
			return badArgs("unknown target %q", t)
		}
	}
	if c.TransactionalID == "" {
		c.TransactionalID = DefaultTransactionalID
	}
	if c.PipelineGroup == "" {
		c.PipelineGroup = DefaultPipelineGroup
	}
	if c.AnalyticsGroup == "" {
		c.AnalyticsGroup = DefaultAnalyticsGroup
	}
	if c.OutputSlack <= 0 {
		c.OutputSlack = DefaultOutputSlack
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// ErasedApps builds Config.Erased from a keyring's key list: for every app with an erased key,
// the end of the latest period such a key covers. For a key of an expiry window that is the
// window's end: every record sealed under it has a timestamp before its expiry, so before that
// end (an over-approximation, on the side of skipping).
func ErasedApps(keys []keyring.KeyInfo) map[string]time.Time {
	out := make(map[string]time.Time)
	for _, k := range keys {
		if k.State != keyring.StateErased {
			continue
		}
		end := keyring.PeriodStart(k.Period + 1)
		if !k.WindowEnd.IsZero() {
			end = k.WindowEnd
		}
		if end.After(out[k.App]) {
			out[k.App] = end
		}
	}
	return out
}

// validateWindow checks the window once To is known (loadCheckpoint fills a zero To in).
func (c *Config) validateWindow() error {
	now := c.Clock()
	if c.To.IsZero() {
		c.To = now
	}
	switch {
	case c.From.After(now):
		return badArgs("--from %s is in the future", stamp(c.From))
	case c.To.After(now):
		return badArgs("--to %s is in the future: replay covers records already written (leave --to out for now)", stamp(c.To))
	case c.From.After(c.To):
		return badArgs("--from %s is after --to %s", stamp(c.From), stamp(c.To))
	}
	return nil
}

// stamp formats t as RFC 3339, with a fraction only if t has one.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (c *Config) has(t Target) bool { return slices.Contains(c.Targets, t) }

// wantEncrypted and wantRedacted say which output topics are written.
func (c *Config) wantEncrypted() bool { return c.has(TargetEncrypted) || c.has(TargetEgress) }
func (c *Config) wantRedacted() bool  { return c.has(TargetRedacted) || c.has(TargetAnalytics) }
