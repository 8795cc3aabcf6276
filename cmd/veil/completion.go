package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// subcommands are the second words of the commands that have them, for completion.
var subcommands = map[string][]string{
	"keys":       {"list", "rotate", "rewrap", "destroy-expired", "erase"},
	"principals": {"add", "list", "remove"},
	"completion": {"bash", "zsh", "fish"},
}

// cmdCompletion prints a completion script: command names, their subcommands, and the flags
// every config-reading command takes.
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
	cmds := strings.Join(names, " ")
	flags := "--config --data-dir --help"
	switch pos[0] {
	case "bash":
		fmt.Fprintf(stdout, bashCompletion, cmds, subcommandCases("bash"), flags)
	case "zsh":
		fmt.Fprintf(stdout, "#compdef veil\nautoload -U bashcompinit && bashcompinit\n"+bashCompletion, cmds, subcommandCases("bash"), flags)
	case "fish":
		fmt.Fprintf(stdout, "complete -c veil -f\n")
		for _, c := range commands() {
			fmt.Fprintf(stdout, "complete -c veil -n __fish_use_subcommand -a %s -d %q\n", c.name, c.summary)
		}
		for _, c := range []string{"keys", "principals", "completion"} {
			fmt.Fprintf(stdout, "complete -c veil -n '__fish_seen_subcommand_from %s' -a %q\n", c, strings.Join(subcommands[c], " "))
		}
		for _, f := range strings.Fields(flags) {
			fmt.Fprintf(stdout, "complete -c veil -l %s\n", strings.TrimPrefix(f, "--"))
		}
	default:
		return &usageError{fmt.Errorf("completion: unknown shell %q (want bash, zsh or fish)", pos[0])}
	}
	return nil
}

func subcommandCases(string) string {
	var b strings.Builder
	for _, c := range []string{"keys", "principals", "completion"} {
		fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return;;\n", c, strings.Join(subcommands[c], " "))
	}
	return b.String()
}

const bashCompletion = `# veil completion (bash): source <(veil completion bash)
_veil() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s --help --version" -- "$cur")); return
  fi
  if [ "$COMP_CWORD" -eq 2 ]; then
    case "${COMP_WORDS[1]}" in
%s    esac
  fi
  COMPREPLY=($(compgen -W "%s" -- "$cur"))
}
complete -o default -F _veil veil
`
