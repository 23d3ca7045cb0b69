package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/bench"
)

// `shoal bench converge` is added to the bench command of bench.go, which
// init has already registered (files initialise in name order).
func init() {
	cmd := &cli.Command{
		Name:  "converge",
		Usage: "time to agree again after a crash or a graceful leave (3-node lab, root), and a loopback simulation of larger clusters",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "runs", Value: 5, Usage: "crash runs and leave runs in the lab, each"},
			&cli.IntFlag{Name: "rate", Value: 300, Usage: "new connections per second from the lab client"},
			&cli.BoolFlag{Name: "lab", Value: true, Usage: "run the lab part (needs root); --lab=false skips it"},
			&cli.StringFlag{Name: "sim", Value: "64,256", Usage: `simulated cluster sizes, comma-separated; "" skips the simulation`},
			&cli.StringFlag{Name: "tables", Value: "3,16,64,256", Usage: `member counts for the table-build rows (as shoal bench tables), comma-separated; "" skips them`},
			&cli.DurationFlag{Name: "sim-timeout", Value: 60 * time.Second, Usage: "bound on each wait of the simulation"},
			&cli.DurationFlag{Name: "sim-probe-interval", Usage: "simulation only: gossip probe interval (probe timeout half of it) instead of the LAN default 200ms"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line, one per measurement: part, scenario, members, metric, unit, samples, p50, p99, max, ..."},
			&cli.BoolFlag{Name: "verbose", Usage: "show the lab's own steps on stderr"},
		},
		Action: benchConverge,
	}
	addBenchCommand(cmd)
}

func benchConverge(c *cli.Context) error {
	runs := c.Int("runs")
	if runs < 1 || runs > 100 {
		return badInput("bench converge: --runs %d must be between 1 and 100", runs)
	}
	rate := c.Int("rate")
	if rate < 1 || rate > 5000 {
		return badInput("bench converge: --rate %d must be between 1 and 5000", rate)
	}
	sizes, err := parseSizes(c.String("sim"), bench.MaxSimMembers)
	if err != nil {
		return badInput("bench converge: --sim: %v", err)
	}
	tableSizes, err := parseSizes(c.String("tables"), bench.MaxTableMembers)
	if err != nil {
		return badInput("bench converge: --tables: %v", err)
	}
	if d := c.Duration("sim-timeout"); d < time.Second || d > 30*time.Minute {
		return badInput("bench converge: --sim-timeout %v must be between 1s and 30m", d)
	}
	if p := c.Duration("sim-probe-interval"); p != 0 && (p < 20*time.Millisecond || p > time.Minute) {
		return badInput("bench converge: --sim-probe-interval %v must be between 20ms and 1m", p)
	}
	doLab := c.Bool("lab")
	if doLab && os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench converge: the lab part needs root (namespaces, DPDK); skipping it (--lab=false silences this)")
		doLab = false
	}
	logf := benchLog
	bin, labLog, ctx, stop, err := labBench(c)
	if err != nil {
		return err
	}
	defer stop()

	var figs []bench.Figure
	// The table builds first, while nothing else of this run uses the CPU.
	if len(tableSizes) > 0 {
		tf, err := tableFigures(bench.TablesOptions{Sizes: tableSizes, Log: logf})
		if err != nil {
			return err
		}
		figs = append(figs, tf...)
	}
	if doLab {
		labRuns, err := bench.RunLabConverge(ctx, bench.LabConvergeOptions{
			Runs: runs, Rate: rate, Binary: bin, LabLog: labLog, Log: logf,
		})
		if err != nil {
			return err
		}
		figs = append(figs, bench.LabFigures(labRuns)...)
		const window = 6 * time.Second
		logf("slow start: a lab with a %v window; n2's server stops, then starts under load", window)
		curve, err := bench.RunSlowStartCurve(ctx, bench.LabConvergeOptions{Rate: rate, Binary: bin, LabLog: labLog, Log: logf}, window)
		if err != nil {
			return err
		}
		figs = append(figs, bench.Figure{Part: "lab", Scenario: "slow-start", Members: 3,
			Metric: "n2 share of new connections per 1 s slice after its server returns", Unit: "share",
			Samples: curve, Max: curve[len(curve)-1],
			Note: fmt.Sprintf("curve %s; window %v from initial_fraction 0.1 in steps of 0.1; max = last slice; full share 0.333", fmtCurve(curve), window)})
	}
	if len(sizes) > 0 {
		res, err := bench.RunSim(ctx, bench.SimOptions{Members: sizes, Timeout: c.Duration("sim-timeout"),
			ProbeInterval: c.Duration("sim-probe-interval"), Log: logf})
		if err != nil {
			return err
		}
		figs = append(figs, bench.SimFigures(res)...)
	}
	if c.Bool("json") {
		for _, f := range figs {
			if err := printJSONLine(f); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Println("shoal bench converge")
	if doLab {
		fmt.Printf("  lab: 3 nodes (weights 1,1,1), %d new connections/s of /obj/1k from the client; n2 SIGKILLed (crash) or SIGTERMed (leave),\n", rate)
		fmt.Printf("       then restarted; %d run(s) of each; status of n1 and n3 polled every 10 ms; p99 below 100 samples is their max\n", runs)
		fmt.Printf("  %s\n", bench.Anchors)
	}
	if len(tableSizes) > 0 {
		fmt.Printf("  %s\n", tablesLine)
	}
	if len(sizes) > 0 {
		tuning := "LAN tuning"
		if p := c.Duration("sim-probe-interval"); p > 0 {
			tuning = fmt.Sprintf("LAN tuning but probe interval %v, probe timeout %v", p, p/2)
		}
		fmt.Printf("  sim: memberlist instances in this process on 127.0.0.1 (encrypted, %s), no data plane; %d cores\n", tuning, runtime.NumCPU())
	}
	fmt.Println()
	return bench.WriteFigures(os.Stdout, figs)
}

// parseSizes reads "64,256"; "" (or "none") means none.
func parseSizes(s string, most int) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > most {
			return nil, fmt.Errorf("%q: want cluster sizes between 2 and %d", f, most)
		}
		out = append(out, n)
	}
	return out, nil
}

func fmtCurve(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}
