package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/reveal"
)

const principalsUsage = `Usage:
  veil principals add --name N --kind messaging|support|other|admin --apps A,… [--override]
  veil principals list
  veil principals remove --name N

Run 'veil principals <subcommand> --help' for its flags.

Example:
  veil principals add --name zendesk --kind support --apps app-42`

// cmdPrincipals manages the reveal API's principals file. add prints the new key once: the file
// keeps only its SHA-256.
func cmdPrincipals(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{errors.New("principals needs a subcommand: add, list or remove (see 'veil principals --help')")}
	}
	sub, args := args[0], args[1:]
	var (
		name, kind, apps string
		override         bool
	)
	extra := func(fs *flag.FlagSet) {
		switch sub {
		case "add":
			fs.StringVar(&name, "name", "", "principal `name`")
			fs.StringVar(&kind, "kind", "", "`kind`: messaging, support, other or admin")
			fs.StringVar(&apps, "apps", "", "comma-separated app `ids` it may read (\"*\": every app, admin only)")
			fs.BoolVar(&override, "override", false, "let a principal of kind other decrypt")
		case "remove":
			fs.StringVar(&name, "name", "", "principal `name`")
		}
	}
	switch sub {
	case "add", "list", "remove":
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, principalsUsage)
		return nil
	default:
		return &usageError{fmt.Errorf("unknown principals subcommand %q (want add, list or remove)", sub)}
	}
	cfg, err := parseConfig("principals "+sub, args, stderr, extra)
	if err != nil {
		return err
	}
	path := cfg.PrincipalsPath()
	switch sub {
	case "add":
		if name == "" || kind == "" || apps == "" {
			return &usageError{errors.New("principals add needs --name, --kind and --apps")}
		}
		if !slices.Contains([]reveal.Kind{reveal.KindMessaging, reveal.KindSupport, reveal.KindOther, reveal.KindAdmin}, reveal.Kind(kind)) {
			return &usageError{fmt.Errorf("--kind %q is not one of messaging, support, other, admin", kind)}
		}
		p := reveal.Principal{Name: name, Kind: reveal.Kind(kind), Apps: config.SplitList(apps), Override: override}
		key, err := reveal.AddPrincipal(path, p)
		if err != nil {
			return fmt.Errorf("adding principal: %w", err)
		}
		fmt.Fprintf(stderr, "added principal %q to %s; its API key is shown once, store it now:\n", name, path)
		fmt.Fprintln(stdout, string(key))
	case "list":
		if err := mustExist(filepath.Dir(path), "data directory"); err != nil {
			return err
		}
		ps, err := reveal.ReadPrincipals(path)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tOVERRIDE\tAPPS")
		for _, p := range ps.List() {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", p.Name, p.Kind, p.Override, strings.Join(p.Apps, ","))
		}
		return tw.Flush()
	case "remove":
		if name == "" {
			return &usageError{errors.New("principals remove needs --name")}
		}
		if err := reveal.RemovePrincipal(path, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed principal %q; its key stops working within a second\n", name)
	}
	return nil
}

// mustExist fails a read-only command whose input does not exist, rather than letting it create
// state (a data dir, a root key) as a side effect of looking.
func mustExist(path, what string) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no %s at %s: nothing to list (is --data-dir or --config right? veil run and veil demo create it)", what, path)
		}
		return err
	}
	return nil
}
