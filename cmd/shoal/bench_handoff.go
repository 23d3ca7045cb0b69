package main

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/bench/handoffbench"
	"github.com/shoal-lb/shoal/dataplane"
)

// `shoal bench handoff` is added to the bench command of bench.go.
func init() {
	cmd := &cli.Command{
		Name: "handoff",
		Usage: "connection handoff in a 3-node lab (root): handoff latency p50/p99 and requests/s, MB/s of 1 KiB and 1 MiB " +
			"served locally, by handoff and by relay, beside the goals (p99 < 500 µs; handoff ≥ 2× relay on 1 MiB)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "concurrency", Value: 8, Usage: "connections open at once in the throughput runs"},
			&cli.IntFlag{Name: "requests-1k", Value: 1500, Usage: "requests of each 1 KiB run"},
			&cli.IntFlag{Name: "requests-1m", Value: 150, Usage: "requests of each 1 MiB run"},
			&cli.IntFlag{Name: "latency-moves", Value: 300, Usage: "handoffs of the one-at-a-time latency run"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line, each with a kind: throughput (mode, object, concurrency, requests, ok, failed, failures, modes, seconds, requests_per_s, mb_per_s, p50_ms, p99_ms), latency (scenario, count, p50_us, p99_us, mean_us, goal_p99_us, p99_to_goal), step (step, count, p50_us, p99_us, mean_us), goal (name, value, goal, ratio_to_goal, detail), node (phase, node, counters)"},
			&cli.IntFlag{Name: "idle-sleep-max-us", Usage: "every node's dataplane.idle_sleep_max_us (default: the config default, 500); the handoff channel's frames cross two workers each way"},
			&cli.BoolFlag{Name: "verbose", Usage: "show the lab's own steps on stderr"},
		},
		Action: benchHandoff,
	}
	addBenchCommand(cmd)
}

func benchHandoff(c *cli.Context) error {
	conc := c.Int("concurrency")
	if conc < 1 || conc > 256 {
		return badInput("bench handoff: --concurrency %d must be between 1 and 256", conc)
	}
	r1k, r1m, moves := c.Int("requests-1k"), c.Int("requests-1m"), c.Int("latency-moves")
	if r1k < 10 || r1k > 10000 {
		return badInput("bench handoff: --requests-1k %d must be between 10 and 10000", r1k)
	}
	if r1m < 10 || r1m > 2000 {
		return badInput("bench handoff: --requests-1m %d must be between 10 and 2000", r1m)
	}
	if moves < 10 || moves > 5000 {
		return badInput("bench handoff: --latency-moves %d must be between 10 and 5000", moves)
	}
	idle := c.Int("idle-sleep-max-us")
	if idle < 0 || idle > 100000 {
		return badInput("bench handoff: --idle-sleep-max-us %d must be between 1 and 100000 (0: the default)", idle)
	}
	if os.Geteuid() != 0 {
		return badInput("bench handoff: needs root (a lab of namespaces and DPDK nodes)")
	}
	bin, labLog, ctx, stop, err := labBench(c)
	if err != nil {
		return err
	}
	defer stop()
	rep, err := handoffbench.Run(ctx, handoffbench.Options{
		Binary: bin, Concurrency: conc, Requests1K: r1k, Requests1M: r1m, LatencyMoves: moves, IdleSleepMaxUS: idle,
		ConnValue: func(seed uint32, src, dst netip.Addr, sport, dport uint16) uint32 {
			return dataplane.ConnValue(seed, src, dst, sport, dport)
		},
		LabLog: labLog,
		Log:    benchLog,
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		for _, l := range rep.Lines() {
			if err := printJSONLine(l); err != nil {
				return err
			}
		}
	} else if err := rep.WriteText(os.Stdout); err != nil {
		return err
	}
	if n := rep.Failed(); n > 0 {
		return fmt.Errorf("bench handoff: %d requests failed", n)
	}
	return nil
}
