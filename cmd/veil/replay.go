package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/crypto/envelope"
	"github.com/veil-project/veil/pipeline"
	"github.com/veil-project/veil/replay"
	"github.com/veil-project/veil/schemas"
)

// defaultTargets are the targets of a replay without --target.
const defaultTargets = "encrypted,redacted"

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		ledgerList, from, to, app, targetList, rate, checkpoint, egressGroups, analyticsGroup string
		dryRun                                                                                bool
	)
	cfg, err := parseConfig("replay", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&ledgerList, "ledger", "all", "comma-separated ledgers to replay, or all")
		fs.StringVar(&from, "from", "", "first raw record `time` replayed, RFC 3339 (required)")
		fs.StringVar(&to, "to", "", "last raw record `time` replayed, RFC 3339, not in the future (default now, or the checkpoint's when resuming)")
		fs.StringVar(&app, "app", "", "only entries of this app (default every app)")
		fs.StringVar(&targetList, "target", defaultTargets, "comma-separated targets: redacted, encrypted, analytics, egress, or all")
		fs.BoolVar(&dryRun, "dry-run", false, "count what would be produced; write nothing")
		fs.StringVar(&rate, "rate", "", "most source `records` per second (default unlimited)")
		fs.StringVar(&checkpoint, "checkpoint", "", "progress `file`: resume from it, update it after every transaction")
		fs.StringVar(&egressGroups, "egress-group", "", "comma-separated consumer groups of egress stages (target egress)")
		fs.StringVar(&analyticsGroup, "analytics-group", replay.DefaultAnalyticsGroup, "consumer group of the analytics sink (target analytics)")
	})
	if err != nil {
		return err
	}
	rc := replay.Config{App: app, DryRun: dryRun, Checkpoint: checkpoint, AnalyticsGroup: analyticsGroup, Progress: stderr, PipelineGroup: cfg.Kafka.Group}
	bad := func(err error) error { return &usageError{err} }
	if from == "" {
		return bad(errors.New("replay needs --from"))
	}
	if rc.From, err = replay.ParseTime("--from", from); err != nil {
		return bad(err)
	}
	if to != "" {
		if rc.To, err = replay.ParseTime("--to", to); err != nil {
			return bad(err)
		}
	}
	if rate != "" {
		if rc.Rate, err = strconv.ParseFloat(rate, 64); err != nil || !(rc.Rate > 0) {
			return bad(fmt.Errorf("--rate %q must be a positive number of records per second", rate))
		}
	}
	if rc.Targets, err = replay.ParseTargets(targetList); err != nil {
		return bad(err)
	}
	rc.EgressGroups = config.SplitList(egressGroups)
	if slices.Contains(rc.Targets, replay.TargetEgress) && len(rc.EgressGroups) == 0 {
		if !strings.Contains(targetList, "all") {
			return bad(errors.New("target egress needs --egress-group NAME (the consumer group of each egress stage)"))
		}
		rc.Targets = slices.DeleteFunc(rc.Targets, func(t replay.Target) bool { return t == replay.TargetEgress })
		fmt.Fprintln(stderr, "veil: no --egress-group given: target egress skipped")
	}
	table, err := cfg.LedgerTable()
	if err != nil {
		return &configError{err}
	}
	var known []string
	for _, l := range table.All() {
		known = append(known, l.Name)
	}
	if ledgerList == "all" || ledgerList == "" {
		rc.Ledgers = known
	} else {
		for _, l := range strings.Split(ledgerList, ",") {
			l = strings.TrimSpace(l)
			if !slices.Contains(known, l) {
				return bad(fmt.Errorf("unknown ledger %q (known: %s)", l, strings.Join(known, ", ")))
			}
			rc.Ledgers = append(rc.Ledgers, l)
		}
	}

	env, err := openKeyEnv(ctx, cfg, time.Now)
	if err != nil {
		return err
	}
	defer env.close()
	keys, err := env.kr.Keys(ctx)
	if err != nil {
		return fmt.Errorf("listing keys for erased apps: %w", err)
	}
	rc.Erased = replay.ErasedApps(keys)
	if slices.Contains(rc.Targets, replay.TargetEncrypted) || slices.Contains(rc.Targets, replay.TargetEgress) {
		st, err := openStore(ctx, cfg, newLogger(stderr, cfg.Log.Level))
		embedded := cfg.Store.Kind == "" || cfg.Store.Kind == "badger"
		switch {
		case err == nil:
			defer st.Close(context.Background())
			rc.Store = st
		case dryRun:
			fmt.Fprintf(stderr, "veil: dry run without the encrypted store (%v): refs already sealed are not told apart\n", err)
		case embedded && targetList == defaultTargets:
			// The embedded store is a directory one process opens at a time: held by the
			// running veil. The redacted target needs no store.
			rc.Targets = slices.DeleteFunc(rc.Targets, func(t replay.Target) bool { return t == replay.TargetEncrypted })
			fmt.Fprintf(stderr, "veil: target encrypted skipped: the embedded store is in use (%v); stop veil and run again with --target encrypted to rebuild encrypted outputs\n", err)
		case embedded:
			return &refusedError{fmt.Errorf("%w: the embedded store opens in one process at a time; stop veil to replay the encrypted or egress target (redacted and analytics need no store)", err)}
		default:
			return err
		}
	}
	kc, err := connectKafka(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer kc.close()
	rc.Brokers, rc.KafkaOpts = kc.brokers, kc.opts
	rc.Transformer = &pipeline.Transformer{
		Registry: schemas.DefaultRegistry(), Ledgers: table, Apps: cfg.AppSettings, Sealer: envelope.NewSealer(env.kr),
		Limits:     schemas.Limits{MaxBytes: cfg.Limits.MaxEntryBytes, MaxDepth: cfg.Limits.MaxDepth},
		FutureSkew: cfg.Limits.FutureSkew, MaxItemBytes: maxItemBytes(cfg),
		Store: rc.Store, // nil in a dry run: tokens are sealed, nothing stored
	}

	res, err := replay.Run(ctx, rc)
	switch {
	case errors.Is(err, replay.ErrBadArgs):
		return bad(err)
	case errors.Is(err, context.Canceled):
		hint := "run it again: outputs already present are not produced twice"
		if checkpoint != "" {
			hint = "run the same command again (with --checkpoint " + checkpoint + ") to resume"
		}
		return fmt.Errorf("replay interrupted after %d records; %s", res.Read, hint)
	case err != nil:
		return fmt.Errorf("replaying: %w", err)
	}
	verb := "produced"
	if dryRun {
		verb = "would produce"
	}
	fmt.Fprintf(stdout, "replay done: %d records read; %s %d encrypted, %d redacted (%d rebuilt from encrypted); %d store rows; %d already present; %d already sealed; %d of other apps; %d skipped",
		res.Read, verb, res.Encrypted, res.Redacted, res.Rebuilt, res.Stored, res.Present, res.Sealed, res.Filtered, res.Skipped)
	if len(res.Rewound) > 0 {
		fmt.Fprintf(stdout, "; moved back: %s", strings.Join(res.Rewound, ", "))
	}
	fmt.Fprintln(stdout)
	if res.Sealed > 0 {
		fmt.Fprintf(stdout, "%d records have no encrypted output but their ref is already sealed: a ref is sealed once, so no second token was made (their redacted outputs are rebuilt)\n", res.Sealed)
	}
	if res.Erased > 0 {
		fmt.Fprintf(stdout, "%d records of erased apps, from before their erasure, were not replayed (erased data never comes back)\n", res.Erased)
	}
	if res.Pending > 0 {
		fmt.Fprintf(stdout, "%d records in the window are not yet processed by veil (consumer group %s): left to veil, which produces them when it runs\n", res.Pending, cfg.Kafka.Group)
	}
	return nil
}
