package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// subcommands are the second words of the commands that have them, for completion.
var subcommands = map[string][]string{
	"keys":       {"list", "rotate", "rewrap", "destroy-expired", "erase"},
	"principals": {"add", "list", "remove"},
	"completion": {"bash", "zsh", "fish"},
}

// cmdCompletion prints a completion script: command names, their subcommands, and the flags of
// each command (read from its own --help, so they never drift).
func cmdCompletion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("completion")
	pos, err := parseFlags(fs, helps["completion"], args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{fmt.Errorf("completion needs one shell: bash, zsh or fish")}
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	flags := commandFlags()
	switch pos[0] {
	case "bash", "zsh":
		if pos[0] == "zsh" {
			fmt.Fprintf(stdout, "#compdef veil\nautoload -U +X bashcompinit && bashcompinit\n")
		}
		var sub, fl strings.Builder
		for _, c := range slices.Sorted(maps.Keys(subcommands)) {
			fmt.Fprintf(&sub, "      %s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return;;\n", c, strings.Join(subcommands[c], " "))
		}
		for _, k := range slices.Sorted(maps.Keys(flags)) {
			fmt.Fprintf(&fl, "    %q) flags=%q;;\n", k, strings.Join(flags[k], " "))
		}
		fmt.Fprintf(stdout, bashCompletion, strings.Join(names, " "), sub.String(), fl.String())
	case "fish":
		fmt.Fprintf(stdout, "# veil completion (fish): veil completion fish | source\ncomplete -c veil -f\n")
		for _, c := range commands() {
			fmt.Fprintf(stdout, "complete -c veil -n __fish_use_subcommand -a %s -d %q\n", c.name, c.summary)
		}
		for _, c := range slices.Sorted(maps.Keys(subcommands)) {
			fmt.Fprintf(stdout, "complete -c veil -n '__fish_seen_subcommand_from %s' -a %q\n", c, strings.Join(subcommands[c], " "))
		}
		for _, k := range slices.Sorted(maps.Keys(flags)) {
			cond := "__fish_seen_subcommand_from " + k
			if cmd, sub, ok := strings.Cut(k, " "); ok {
				cond = "__fish_seen_subcommand_from " + cmd + "; and __fish_seen_subcommand_from " + sub
			}
			for _, f := range flags[k] {
				fmt.Fprintf(stdout, "complete -c veil -n '%s' -l %s\n", cond, strings.TrimPrefix(f, "--"))
			}
		}
	default:
		return &usageError{fmt.Errorf("completion: unknown shell %q (want bash, zsh or fish)", pos[0])}
	}
	return nil
}

// commandFlags returns the flags of every command with a help entry, as its --help lists them.
func commandFlags() map[string][]string {
	out := map[string][]string{}
	for name := range helps {
		if name == "completion" {
			continue
		}
		var b strings.Builder
		runMain(append(strings.Fields(name), "--help"), &b, io.Discard)
		for _, line := range strings.Split(b.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, "  --"); ok {
				f, _, _ := strings.Cut(rest, " ")
				out[name] = append(out[name], "--"+f)
			}
		}
		out[name] = append(out[name], "--help")
	}
	return out
}

const bashCompletion = `# veil completion (bash): source <(veil completion bash)
_veil() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s --help --version" -- "$cur")); return
  fi
  local cmd="${COMP_WORDS[1]}"
  if [ "$COMP_CWORD" -eq 2 ]; then
    case "$cmd" in
%s    esac
  fi
  local key="$cmd" flags="--help"
  case "$cmd" in keys|principals) key="$cmd ${COMP_WORDS[2]}";; esac
  case "$key" in
%s  esac
  COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}
complete -o default -F _veil veil
`
