// Command veil keeps sensitive conversation data out of everything but an encrypted store.
//
// Exit codes: 0 success; 1 runtime failure (also a component of veil run, serve or demo that
// stopped on its own: see group); 2 bad usage; 3 invalid configuration; 4 a dependency refused to
// start (for example a raw topic that keeps plaintext longer than its TTL); 5 veil reveal
// answered, but not every token was ok.
//
// Lifecycle: every long-lived component has Close(ctx) error, idempotent, returning only once
// its own goroutines returned. A command builds its components (start), runs their actors under
// one group (group.run: any actor that returns stops the others, stage by stage, within
// shutdownTimeout), and closes the components in reverse order of creation (service.close), so
// nothing closes under a running actor and the stores close last.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/veil-project/veil/ops"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitConfig  = 3
	exitRefused = 4
	exitNotOK   = 5
)

var version = "dev" // set by -ldflags "-X main.version=…"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the pipeline (embedded broker when no kafka.brokers are configured)", cmdRun},
		{"demo", "run the pipeline with sample traffic and show one entry as original, encrypted and redacted", cmdDemo},
		{"keys", "list, rotate, rewrap, destroy and erase app keys (tenant erasure)", cmdKeys},
		{"replay", "re-run a time window of ledgers into the encrypted, redacted, analytics or egress outputs", cmdReplay},
		{"serve", "serve the reveal API alone (store, keys and audit; no stream processing)", cmdServe},
		{"principals", "add, list or remove reveal API principals (add prints a new API key once)", cmdPrincipals},
		{"reveal", "reveal tokens through a reveal API: veil reveal [--url URL] TOKEN…", cmdReveal},
		{"check", "validate the config and reach every configured dependency, read-only", cmdCheck},
		{"certs", "make a self-signed certificate for the reveal API (kept across restarts)", cmdCerts},
		{"completion", "print a shell completion script: veil completion bash|zsh|fish", cmdCompletion},
		{"version", "print the version (also veil --version)", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "veil: encrypt sensitive transcript data in Kafka streams and shred it on schedule.\n\n")
	fmt.Fprintf(w, "Usage:\n  veil <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'veil <command> --help' for the flags of a command.\n")
	fmt.Fprintf(w, "Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid config, 4 refused to start, 5 a token not revealed (veil reveal).\n")
	fmt.Fprintf(w, "\nExample:\n  veil demo\n")
}

// usageError marks a bad command line (exit 2); configError an invalid configuration (exit 3);
// refusedError a dependency that refused to start (exit 4).
type (
	usageError   struct{ error }
	configError  struct{ error }
	refusedError struct{ error }
)

// notOKError is veil reveal's answer when the API answered but not every token was ok (exit 5).
type notOKError struct{ n int }

func (e *notOKError) Error() string { return fmt.Sprintf("%d token(s) not revealed", e.n) }

func main() {
	setupLogging(os.Stderr)
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// setupLogging makes every line the process writes JSON: components that log through
// slog.Default() or the log package, and the Redis client's own logger (plain text by default),
// go through the same JSON handler as the service's logger. It sets process-wide state, so main
// calls it once, not runMain.
func setupLogging(w io.Writer) {
	logger := ops.NewLogger(w, "info")
	slog.SetDefault(logger)
	redis.SetLogger(redisLogger{logger})
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		var h *helpError
		if errors.As(err, &h) {
			fmt.Fprint(stdout, h.text) // asking for help is not an error: stdout, exit 0
			return exitOK
		}
		return exitCode(err, stderr)
	}
	fmt.Fprintf(stderr, "veil: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// exitCode prints err once, to stderr, and maps it to the exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var n *notOKError
	if errors.As(err, &n) {
		return exitNotOK // the per-token statuses are already on stdout
	}
	fmt.Fprintf(stderr, "veil: %v\n", err)
	var (
		u *usageError
		c *configError
		r *refusedError
	)
	switch {
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &c):
		return exitConfig
	case errors.As(err, &r):
		return exitRefused
	}
	return exitFailure
}

// redisLogger adapts slog to the Redis client's logger (redis.SetLogger); its lines are warnings.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg_text", fmt.Sprintf(format, v...))
}

func cmdVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version")
	pos, err := parseFlags(fs, helps["version"], args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return &usageError{fmt.Errorf("version takes no arguments")}
	}
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintf(stdout, "veil %s\n", v)
	return nil
}
