package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
)

// help is what `veil <command> --help` prints besides the flags: the usage line (flags spelled
// --name, as in the flag list), a sentence or two, and one example.
type help struct {
	usage   string
	about   string
	example string
	// common lists the common config flags (config.BindFlags) the command uses; nil: all.
	common []string
}

// Common flag sets, by what a command touches.
var (
	flagsFile    = []string{"data-dir"}                                                         // reads the data dir only
	flagsService = []string{"data-dir", "brokers", "log-level", "listen-api", "listen-metrics"} // runs the pipeline
	flagsServe   = []string{"data-dir", "brokers", "log-level", "listen-api"}                   // serves the API
	flagsKafka   = []string{"data-dir", "brokers", "log-level"}                                 // talks to Kafka
)

// helps holds the help of every command parsed by parseConfig, by its name ("keys list").
var helps = map[string]help{
	"run": {usage: "veil run [--config FILE] [flags]", common: flagsService,
		about:   "Runs the pipeline: consumes ledger.<name>, writes encrypted.<name>, redacted.<name>, the store and\nthe analytics sink, and serves the reveal API and the metrics. No kafka.brokers: an embedded broker.",
		example: "veil run --config /etc/veil/veil.yaml"},
	"demo": {usage: "veil demo [--entries N] [--exit] [flags]", common: flagsService,
		about:   "Runs the pipeline on the embedded defaults with sample traffic, shows one entry as original,\nencrypted and redacted, and serves the reveal API on loopback with a demo principal whose key it\nprints once, with the exact veil reveal command that opens one sample token.",
		example: "veil demo --exit"},
	"serve": {usage: "veil serve [--config FILE] [flags]", common: flagsServe,
		about:   "Serves the reveal API alone (store, keys and audit; no stream processing).",
		example: "veil serve --config /etc/veil/veil.yaml"},
	"check": {usage: "veil check [--config FILE] [flags]", common: []string{"data-dir", "brokers"},
		about: "Validates the configuration and reaches every configured dependency read-only (Kafka, KMS,\nstore, key store, S3), one line each. Exit 0 when all answer, 1 when any does not, 3 on invalid config.\n" +
			"With --ready, asks the veil running with this config whether it is ready (a container healthcheck).",
		example: "veil check --config /etc/veil/veil.yaml"},
	"replay": {usage: "veil replay --from TIME [--to TIME] [--ledger L,…] [--target T,…] [flags]", common: flagsKafka,
		about:   "Rebuilds the outputs (encrypted, redacted, analytics, egress) of a time window from the raw ledgers,\nor from the encrypted ones where the raw records are gone. Only records veil has processed; never\nan output twice, never a second seal of a ref, never a longer TTL. See docs/replay.md.",
		example: "veil replay --from 2026-11-22T10:00:00Z --ledger event --target redacted"},
	"keys list": {usage: "veil keys list [--json] [flags]", common: flagsFile,
		about: "Lists the app keys (KMS-wrapped app KEKs) in the key store.", example: "veil keys list --json"},
	"keys rotate": {usage: "veil keys rotate [--app APP] [flags]", common: flagsFile,
		about: "Starts a new key generation for an app (or every app): new entries seal under it.", example: "veil keys rotate --app app-42"},
	"keys rewrap": {usage: "veil keys rewrap [--key-id ID | --new-root-key FILE] [flags]", common: flagsFile,
		about: "Re-wraps every app key under another KMS key (aws) or a new local root key (local).", example: "veil keys rewrap --key-id alias/veil-2026"},
	"keys destroy-expired": {usage: "veil keys destroy-expired [flags]", common: flagsFile,
		about: "Destroys the app keys whose data has expired (veil run does this on its own too).", example: "veil keys destroy-expired"},
	"keys erase": {usage: "veil keys erase --app APP --yes [flags]", common: flagsKafka,
		about: "Tenant erasure: destroys every key of an app (crypto-shredding), then deletes its store rows and blobs.", example: "veil keys erase --app app-42 --yes"},
	"version": {usage: "veil version", about: "Prints the version (also: veil --version).", example: "veil version"},
	"certs": {usage: "veil certs --dir DIR [--host H,…] [--days N] [--force]",
		about: "Writes DIR/cert.pem and DIR/key.pem (0600): a self-signed ECDSA P-256 certificate for the reveal\n" +
			"API (tls.cert_file, tls.key_file), and prints its SHA-256 fingerprint. Existing files are kept\n" +
			"unless --force, so clients that trust the certificate keep trusting it across restarts.",
		example: "veil certs --dir /var/lib/veil/tls --host veil-1,veil-2,localhost,127.0.0.1"},
	"reveal": {usage: "veil reveal [--url URL] [--ca FILE] [--json] TOKEN…  (API key in $VEIL_API_KEY)",
		about: "Asks a reveal API for the values behind tokens; prints one line per token: status, a tab, the\n" +
			"value as JSON. Without --url and $VEIL_URL it uses the API of the demo running on --data-dir\n" +
			"(URL and certificate from DIR/demo.json). Exit 0: every token ok; 5: at least one token was\n" +
			"expired, denied or invalid; 1: the request failed; 2: bad usage.",
		example: "VEIL_API_KEY=vk_… veil reveal 'veil:v1:…'"},
	"completion": {usage: "veil completion bash|zsh|fish",
		about:   "Prints a shell completion script for veil.",
		example: "source <(veil completion bash)"},
	"principals add": {usage: "veil principals add --name N --kind messaging|support|other|admin --apps A,… [--override] [flags]", common: flagsFile,
		about:   "Adds a reveal API principal and prints its API key once (the file keeps only its SHA-256).\nA running veil picks the change up within a second.",
		example: "veil principals add --name zendesk --kind support --apps app-42"},
	"principals list": {usage: "veil principals list [flags]", common: flagsFile,
		about: "Lists the reveal API principals (never their keys).", example: "veil principals list"},
	"principals remove": {usage: "veil principals remove --name N [flags]", common: flagsFile,
		about: "Removes a principal; its key stops working within a second.", example: "veil principals remove --name zendesk"},
}

// helpError carries a command's help text to runMain, which prints it to stdout and exits 0:
// asking for help is not a failure.
type helpError struct{ text string }

func (h *helpError) Error() string { return "help requested" }
func (h *helpError) Unwrap() error { return flag.ErrHelp }

// newFlagSet returns a flag set for `veil <name>` that prints nothing by itself: parseFlags
// turns --help into a helpError and a bad flag into a usageError, so each is printed once.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("veil "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args into fs, flags and positional arguments in any order (veil reveal TOKEN
// --json works), and returns the positional ones; after "--" everything is positional. --help
// becomes a helpError with the command's help, a bad flag a usageError pointing at --help.
func parseFlags(fs *flag.FlagSet, h help, args []string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, &helpError{helpText(fs, h)}
		}
		if err != nil {
			return nil, &usageError{fmt.Errorf("%w (see '%s --help')", err, fs.Name())}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// helpText renders usage, about, flags and example. Flags are spelled --name everywhere (Go's
// flag package accepts one dash or two).
func helpText(fs *flag.FlagSet, h help) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n  %s\n", h.usage)
	if h.about != "" {
		fmt.Fprintf(&b, "\n%s\n", h.about)
	}
	metas := usageMetavars(h.usage)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			switch {
			case arg == "":
			case metas[f.Name] != "":
				arg = metas[f.Name] // the usage line's spelling: --name N there, --name N here
			case arg == "string" || arg == "int" || arg == "value":
				// No `name` in the usage text: name the argument after the flag's last word.
				arg = f.Name[strings.LastIndex(f.Name, "-")+1:]
			}
			if arg != "" {
				line += " " + strings.ToUpper(arg)
			}
			if !zeroDefault(f) {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(&b, "%s\n      %s\n", line, usage)
		})
	}
	if h.example != "" {
		fmt.Fprintf(&b, "\nExample:\n  %s\n", h.example)
	}
	return b.String()
}

// usageFlag matches "--name META" in a usage line; META starts with a capital letter.
var usageFlag = regexp.MustCompile(`--([a-z][a-z-]*)(?: ([A-Z][^ \[\]]*))?`)

// usageMetavars returns the argument names a usage line gives its flags.
func usageMetavars(usage string) map[string]string {
	out := map[string]string{}
	for _, m := range usageFlag.FindAllStringSubmatch(usage, -1) {
		if m[2] != "" {
			out[m[1]] = m[2]
		}
	}
	return out
}

// zeroDefault reports whether f's default is its type's zero value (not worth printing).
func zeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return true
	}
	// flag.Func values have no meaningful default.
	return reflect.TypeOf(f.Value).String() == "flag.funcValue"
}
