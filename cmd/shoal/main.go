// Command shoal is the one binary of the shoal cluster: the node daemon, the
// lab, the demo, the benchmarks and the control commands.
package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	// Every thread starts with a timer slack that lets sysmon's naps
	// coalesce (issue 14, seventh pass).
	_ "github.com/shoal-lb/shoal/internal/timerslack"
)

// commands collects the subcommands; each file of this package adds its own
// in an init function, so a concern lives in one file.
var commands []*cli.Command

// usageError marks errors caused by bad input (config, arguments); they exit
// with status 2, as a shell user expects of a bad invocation.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// badInput wraps err as a usage error (exit status 2).
func badInput(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// cloneCommands copies the command tree: running an App fills in its
// commands (help subcommands, parents), so each App gets its own.
func cloneCommands(cs []*cli.Command) []*cli.Command {
	out := make([]*cli.Command, len(cs))
	for i, c := range cs {
		cc := *c
		cc.Subcommands = cloneCommands(c.Subcommands)
		out[i] = &cc
	}
	return out
}

// newApp is the command line: every command, shell completion on.
func newApp() *cli.App {
	return &cli.App{
		Name:  "shoal",
		Usage: "leaderless load-balancing cluster for web servers",
		Description: "shoal runs a cluster node (shoal node), talks to a running node's admin API " +
			"(status, stats, ranges, groups, flows, health, drain, weight), runs the namespace lab, " +
			"the demo and the benchmarks. Documentation: docs/ in the source tree.",
		Commands:             cloneCommands(commands),
		EnableBashCompletion: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func main() {
	app := newApp()
	if err := app.Run(interspersed(app.Commands, os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "shoal: %v\n", err)
		var u usageError
		if errors.As(err, &u) || strings.HasPrefix(err.Error(), "Required flag") {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// interspersed moves the flags of a leaf command before its positional
// arguments, so that `shoal content publish /page.html --from F --group G`
// parses as written (urfave/cli stops at the first positional argument).
// A flag that takes a value takes the next word unless written name=value;
// "--" ends the flags.
func interspersed(cmds []*cli.Command, args []string) []string {
	if len(args) < 2 || slices.Contains(args, "--generate-bash-completion") {
		return args // shell completion reads the words as typed
	}
	i := 1
	var leaf *cli.Command
	for i < len(args) {
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(args[i]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		leaf, cmds = next, next.Subcommands
		i++
	}
	if leaf == nil || len(leaf.Subcommands) > 0 || leaf.SkipFlagParsing {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range leaf.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, positional []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			positional = append(positional, rest[j+1:]...)
			j = len(rest)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && j+1 < len(rest) {
				flags = append(flags, rest[j+1])
				j++
			}
		default:
			positional = append(positional, a)
		}
	}
	out := append(append([]string{}, args[:i]...), flags...)
	if len(positional) > 0 {
		out = append(append(out, "--"), positional...)
	}
	return out
}
