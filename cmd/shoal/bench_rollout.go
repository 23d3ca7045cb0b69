package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/bench"
	"github.com/shoal-lb/shoal/lab"
)

// `shoal bench rollout` (issue 13): time to roll a new version out to
// groups of lab nodes, and the request error rate meanwhile.
func init() {
	cmd := &cli.Command{
		Name:  "rollout",
		Usage: "time to roll a 100 MB version out to groups of 2, 4 and 8 lab nodes, and the client's request error rate meanwhile (root)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "nodes", Value: "2,4,8", Usage: "group sizes (one lab each, group all), comma-separated"},
			&cli.Int64Flag{Name: "bytes", Value: 100_000_000, Usage: "size of the new version"},
			&cli.IntFlag{Name: "rate", Value: 50, Usage: "client requests per second during the rollout, each on a fresh connection"},
			&cli.IntFlag{Name: "memory-mb", Value: 64, Usage: "dpdk.memory_mb of each lab node"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per group size: nodes, bytes, seconds, threshold_seconds, requests, failed, error_rate, failures, old, new, mb_per_sec"},
			&cli.BoolFlag{Name: "verbose", Usage: "show the lab's own steps on stderr"},
		},
		Action: benchRollout,
	}
	addBenchCommand(cmd)
}

func benchRollout(c *cli.Context) error {
	sizes, err := parseSizes(c.String("nodes"), lab.MaxNodes)
	if err != nil || len(sizes) == 0 {
		return badInput("bench rollout: --nodes %q: want group sizes between 2 and %d (%v)", c.String("nodes"), lab.MaxNodes, err)
	}
	if b := c.Int64("bytes"); b < 1<<20 || b > 10<<30 {
		return badInput("bench rollout: --bytes %d must be between 1 MiB and 10 GiB", b)
	}
	if r := c.Int("rate"); r < 1 || r > 1000 {
		return badInput("bench rollout: --rate %d must be between 1 and 1000", r)
	}
	if m := c.Int("memory-mb"); m < 16 || m > 4096 {
		return badInput("bench rollout: --memory-mb %d must be between 16 and 4096", m)
	}
	if os.Geteuid() != 0 {
		return badInput("bench rollout: needs root (namespaces, DPDK)")
	}
	bin, labLog, ctx, stop, err := labBench(c)
	if err != nil {
		return err
	}
	defer stop()
	runs, err := bench.RunRollout(ctx, bench.RolloutOptions{Sizes: sizes, Bytes: c.Int64("bytes"), Rate: c.Int("rate"),
		Binary: bin, MemoryMB: c.Int("memory-mb"), LabLog: labLog, Log: benchLog})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		for _, r := range runs {
			if err := printJSONLine(r); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Println("shoal bench rollout")
	fmt.Printf("  lab: group all of N nodes; v1 (1 MiB) everywhere, then v2 (%d bytes) published on n1 with threshold 50, batch 1,\n", c.Int64("bytes"))
	fmt.Printf("  while the client asks the VIP for 64 KiB ranges of it, %d requests/s on fresh connections\n\n", c.Int("rate"))
	fmt.Printf("  %-6s %-12s %-14s %-10s %-12s %-22s %s\n", "NODES", "ROLLOUT", "THRESHOLD AT", "MB/s", "REQUESTS", "FAILED (goal 0)", "ANSWERS v1/v2")
	for _, r := range runs {
		fmt.Printf("  %-6d %-12s %-14s %-10.1f %-12d %-22s %d/%d\n", r.Nodes, fmt.Sprintf("%.1f s", r.Seconds),
			fmt.Sprintf("%.1f s", r.ThresholdSeconds), r.MBPerSec, r.Requests,
			fmt.Sprintf("%d (%.2f%%) %v", r.Failed, 100*r.ErrorRate, failuresOrNone(r.Failures)), r.Old, r.New)
	}
	return nil
}

func failuresOrNone(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	return fmt.Sprint(m)
}
