// Command shoal is the one binary of the shoal cluster: the node daemon, the
// lab, the demo, the benchmarks and the control commands.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
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
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "shoal: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
