package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/bench"
)

// `shoal bench tables` is added to the bench command of bench.go, which
// init has already registered (files initialise in name order).
func init() {
	cmd := &cli.Command{
		Name:  "tables",
		Usage: "range-table algorithms side by side: build time, share error, movement on a change (no root, seconds)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "sizes", Value: "3,16,64,256", Usage: "member counts, comma-separated"},
			&cli.IntFlag{Name: "builds", Value: 5, Usage: "timed builds per member count and algorithm"},
			&cli.IntFlag{Name: "changes", Value: 8, Usage: "random weight changes, joins and leaves per member count (each)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per measurement"},
		},
		Action: benchTables,
	}
	addBenchCommand(cmd)
}

// tablesLine says what the table rows measure.
var tablesLine = fmt.Sprintf("tables: every range-table algorithm (v1, v2, ...) on the same member sets, weights uniform in 1-4 from a fixed random source;\n"+
	"          builds on one core (%d CPUs here), a new seed each, timed by the thread's CPU time and by the wall clock; share error |buckets − 65536·w/Σw| of the worst member, per table;\n"+
	"          movement = buckets moved / the minimum the two tables' counts force (Σ max(0, before − after)), per change and over all changes", runtime.NumCPU())

func benchTables(c *cli.Context) error {
	sizes, err := parseSizes(c.String("sizes"), bench.MaxTableMembers)
	if err != nil || len(sizes) == 0 {
		return badInput("bench tables: --sizes %q: want member counts between 2 and %d", c.String("sizes"), bench.MaxTableMembers)
	}
	if n := c.Int("builds"); n < 1 || n > 1000 {
		return badInput("bench tables: --builds %d must be between 1 and 1000", n)
	}
	if n := c.Int("changes"); n < 1 || n > 1000 {
		return badInput("bench tables: --changes %d must be between 1 and 1000", n)
	}
	figs, err := tableFigures(bench.TablesOptions{Sizes: sizes, Builds: c.Int("builds"), Changes: c.Int("changes"),
		Log: benchLog})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		for _, f := range figs {
			if err := printJSONLine(f); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Println("shoal bench tables")
	fmt.Printf("  %s\n\n", tablesLine)
	return bench.WriteFigures(os.Stdout, figs)
}

// tableFigures runs the table part on this goroutine's thread alone, as a
// node's controller builds: one core.
func tableFigures(o bench.TablesOptions) ([]bench.Figure, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	res, err := bench.RunTables(o)
	if err != nil {
		return nil, err
	}
	return bench.TableFigures(res), nil
}
