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

func main() {
	app := &cli.App{
		Name:     "shoal",
		Usage:    "leaderless load-balancing cluster for web servers",
		Commands: commands,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "shoal: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
