package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/bench/dpbench"
	"github.com/shoal-lb/shoal/bench/httpbench"
	dpdk "github.com/shoal-lb/shoal/cgo"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:  "bench",
		Usage: "benchmarks that report figures beside their limit",
		Subcommands: []*cli.Command{{
			Name:  "dataplane",
			Usage: "the worker's own loop on one core, beside the bare rx→drop and header-reading loops, and the nftables peer",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "duration", Value: time.Second, Usage: "length of each run"},
				&cli.IntFlag{Name: "flows", Value: 1 << 20, Usage: "established flows in the table of the --loop run"},
				&cli.IntFlag{Name: "templates", Value: 1 << 16, Usage: "distinct frames replayed in the foreign-drop and SYN runs"},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line, one per scenario (scenario, mpps, header_loop_mpps, bare_loop_mpps, ratio_to_header_loop, floor_mpps and ratio_to_floor in the SYN scenarios, check, counters, ...), then with --flood-rounds one for the flood rounds (random_median, colliding_median, ratio_median, ratio_min, ratio_max, colliding_cost, ...), then with --peer one per nftables chain (mpps_per_core, ...), then with --loop one for the worker loop (mpps, max_iter_us, dump_max_iter_us, empty_ring_poll_ns, ...)"},
				&cli.BoolFlag{Name: "peer", Value: true, Usage: "also measure the kernel peer: nftables jhash cluster filtering on a veth (needs root)"},
				&cli.StringFlag{Name: "scenarios", Usage: "run only the per-packet scenarios whose name matches this regular expression (e.g. 'new connections' to profile one)"},
				&cli.IntFlag{Name: "flood-rounds", Value: 5, Usage: "rounds of the random and the colliding SYN flood beside established traffic, alternated, for the colliding flood's cost to legitimate traffic (median and spread; 0: none)"},
				&cli.BoolFlag{Name: "loop", Value: true, Usage: "also run the real worker loop: longest iteration while shoal flows dumps the table, cost of the command-ring check"},
			},
			Action: benchDataplane,
		}},
	})
}

func benchDataplane(c *cli.Context) error {
	if n := c.Int("flood-rounds"); n < 0 || n > 100 {
		return badInput("bench dataplane: --flood-rounds %d must be between 0 and 100", n)
	}
	if c.Int("flows") < 1024 || c.Int("flows") > 1<<24 {
		return badInput("bench dataplane: --flows %d must be between 1024 and 16777216", c.Int("flows"))
	}
	if n := c.Int("templates"); n < 1024 || n > 1<<22 {
		return badInput("bench dataplane: --templates %d must be between 1024 and 4194304", n)
	}
	if d := c.Duration("duration"); d < 10*time.Millisecond || d > 10*time.Minute {
		return badInput("bench dataplane: --duration %v must be between 10ms and 10m", d)
	}
	var only *regexp.Regexp
	if e := c.String("scenarios"); e != "" {
		var err error
		if only, err = regexp.Compile(e); err != nil {
			return badInput("bench dataplane: --scenarios %q: %v", e, err)
		}
	}
	runtime.LockOSThread()
	const memMB = 1536
	free, _ := dpdk.HugepagesFree()
	huge := free >= memMB/2
	if !huge {
		fmt.Fprintf(os.Stderr, "bench: only %d free hugepages; running with --no-huge (slower)\n", free)
	}
	eal := dpdk.EALConfig{Lcores: "0@0,1@1", MemoryMB: memMB, Hugepages: huge, InMemory: true,
		FilePrefix: fmt.Sprintf("shoal-bench-%d", os.Getpid()), NoPCI: true, LogLevel: "error",
		Extra: []string{"--no-telemetry"}}
	if err := dpdk.InitEAL(eal); err != nil {
		return fmt.Errorf("bench: EAL: %w", err)
	}
	defer dpdk.CleanupEAL()
	rep, err := dpbench.RunDataplane(dpbench.DataplaneOptions{
		Duration: c.Duration("duration"), Flows: c.Int("flows"), Small: c.Int("templates"),
		Only: only, FloodRounds: c.Int("flood-rounds"), Log: benchLog,
	})
	if err != nil {
		return err
	}
	res := rep.Scenarios
	var peer []dpbench.PeerResult
	if c.Bool("peer") {
		peer, err = dpbench.RunNftPeer(dpbench.DataplaneOptions{Duration: c.Duration("duration"), Small: c.Int("templates"),
			Log: benchLog})
		if err != nil {
			return fmt.Errorf("bench: kernel peer: %w", err)
		}
	}
	var loop dpbench.LoopReport
	if c.Bool("loop") {
		loop, err = dpbench.RunLoop(dpbench.DataplaneOptions{
			Duration: c.Duration("duration"), Flows: c.Int("flows"), Small: c.Int("templates"),
			Log: benchLog,
		})
		if err != nil {
			return err
		}
	}
	if c.Bool("json") {
		for _, s := range res {
			if err := printJSONLine(s); err != nil {
				return err
			}
		}
		if rep.Flood != nil {
			if err := printJSONLine(rep.Flood); err != nil {
				return err
			}
		}
		for _, p := range peer {
			if err := printJSONLine(p); err != nil {
				return err
			}
		}
		if c.Bool("loop") {
			return printJSONLine(loop)
		}
		return nil
	}
	fmt.Printf("shoal bench dataplane: the worker's loop (worker.c, dataplane.Runtime) on one lcore (CPU 1), burst 32,\n"+
		"net_null replaying templates, a net_null sink as tap, hugepages %v\n\n", huge)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tMpps\theader loop\tratio\tbare loop\tfloor\tratio\tns/pkt\tper CPU second: Mpps\theader loop\tratio\tfloor\tratio\tns/pkt\tverdicts\t")
	for _, s := range res {
		rate := ""
		if s.Rate > 0 {
			rate = fmt.Sprintf(" (%.1f M new connections/s)", s.Rate)
		}
		floor, cpuFloor := "-\t-", "-\t-"
		if s.FloorMpps > 0 {
			floor = fmt.Sprintf("%.1f\t%.2f", s.FloorMpps, s.RatioToFloor)
			cpuFloor = fmt.Sprintf("%.1f\t%.2f", s.FloorCPUMpps, s.CPURatioToFloor)
		}
		fmt.Fprintf(tw, "%s%s\t%.1f\t%.1f\t%.2f\t%.1f\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%s\t%.1f\t%s\t\n", s.Scenario, rate, s.Mpps, s.HeaderMpps, s.RatioToHeaders, s.BareMpps, floor, s.NsPerPacket,
			s.CPUMpps, s.HeaderCPUMpps, s.CPURatioToHeaders, cpuFloor, s.CPUNsPerPacket, s.Check)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f := rep.Flood; f != nil {
		fmt.Printf("\nlegitimate traffic beside a random and a colliding SYN flood, %d rounds each, alternated\n"+
			"(established ACKs decided per second of worker CPU, Mpps; the pool interleaves one ACK with one flood SYN)\n\n", f.Rounds)
		tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "beside the random flood\tmedian %.2f\trounds %s\t\n", f.RandomMedian, floats(f.Random))
		fmt.Fprintf(tw, "beside the colliding flood\tmedian %.2f\trounds %s\t\n", f.CollidingMedian, floats(f.Colliding))
		lo, hi := f.RatioMin, f.RatioMax
		fmt.Fprintf(tw, "colliding ÷ random, per round\tmedian %.3f\tspread %.3f–%.3f\t\n", f.RatioMedian, lo, hi)
		verdict := "met"
		if f.Cost >= f.Goal {
			verdict = "not met"
		}
		fmt.Fprintf(tw, "cost of the colliding flood\t%.1f %% (median)\tgoal < %.0f %%: %s; verdicts %s\t\n", 100*f.Cost, 100*f.Goal, verdict, f.Check)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(peer) > 0 {
		fmt.Printf("\nkernel peer on the foreign-drop frames: net_af_packet on a veth from CPU 1, received on CPU 0 (RPS)\n\n")
		tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "chain\tMpps per core (softirq)\tMpps per core (all CPU 0)\toffered Mpps\tshoal foreign drop ÷ peer\t")
		var shoalDrop float64
		if len(res) > 0 {
			shoalDrop = res[0].Mpps
		}
		for _, p := range peer {
			perBusy := 0.0
			if p.BusySec > 0 {
				perBusy = float64(p.Frames) / p.BusySec / 1e6
			}
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.1fx\t\n", p.Chain, p.MppsPerCore, perBusy, p.MppsOffered, shoalDrop/p.MppsPerCore)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !c.Bool("loop") {
		return nil
	}
	l := loop
	fmt.Printf("\nthe worker loop itself (worker.c on lcore 1), %d flows, NIC replaying ACKs of %d of them, idle sleep up to %d µs:\n\n",
		l.Flows, l.Templates, l.IdleSleepMaxUS)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "without a dump (%.1f s)\t%.1f Mpps, %.0f ns per iteration, longest iteration %.1f µs, worker switched out %d times\n",
		l.Window, l.Mpps, l.NsPerIteration, l.MaxIterUS, l.Switched)
	fmt.Fprintf(tw, "shoal flows dumping %d flows\ttook %.2f s (%d-flow chunks, %d slots scanned per iteration), %.1f Mpps meanwhile\n",
		l.DumpedFlows, l.DumpSeconds, l.DumpChunkFlows, l.ScanSlotsPerIter, l.DumpMpps)
	fmt.Fprintf(tw, "  longest iteration\t%.1f µs (limit %.0f µs), worker switched out %d times\n", l.DumpMaxIterUS, l.MaxIterBoundUS, l.DumpSwitched)
	fmt.Fprintf(tw, "the same dump, no traffic, worker SCHED_FIFO\ttook %.2f s, longest iteration %.1f µs (limit %.0f µs), worker switched out %d times\n",
		l.QuietDumpSeconds, l.QuietDumpMaxIterUS, l.MaxIterBoundUS, l.QuietDumpSwitched)
	fmt.Fprintf(tw, "empty command-ring check\t%.2f ns per iteration (%.2f%% of an iteration under this traffic)\n", l.EmptyPollNs, 100*l.EmptyPollShare)
	return tw.Flush()
}

// floats prints rates with two decimals.
func floats(xs []float64) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.2f", x)
	}
	return b.String()
}

func init() {
	for _, c := range commands {
		if c.Name != "bench" {
			continue
		}
		c.Subcommands = append(c.Subcommands, &cli.Command{
			Name:  "http",
			Usage: "shoal (3 lab nodes) vs a central HAProxy with 3 nginx vs one nginx on the plain kernel path: 1 KiB and 1 MiB, keep-alive and fresh connections",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "quick", Usage: "smoke test: short runs, few connections (CI)"},
				&cli.DurationFlag{Name: "duration", Usage: "length of each wrk run (default 5s, quick 1s)"},
				&cli.IntFlag{Name: "connections", Usage: "wrk connections (default 12, quick 4)"},
				&cli.StringFlag{Name: "reply-path", Usage: "dataplane.reply_path of the shoal nodes (auto, kernel, tap)"},
				&cli.StringFlag{Name: "prefilter", Usage: "dataplane.prefilter of the shoal nodes (auto, on, off)"},
				&cli.StringFlag{Name: "out", Value: "bench/results", Usage: "directory for the JSON report and the PNG plot"},
				&cli.StringFlag{Name: "binary", Usage: "shoal binary for the nodes (default: this one)"},
			},
			Action: benchHTTP,
		})
	}
}

func benchHTTP(c *cli.Context) error {
	if p := c.String("reply-path"); p != "" && p != "auto" && p != "kernel" && p != "tap" {
		return badInput("bench http: --reply-path %q must be auto, kernel or tap", p)
	}
	if p := c.String("prefilter"); p != "" && p != "auto" && p != "on" && p != "off" {
		return badInput("bench http: --prefilter %q must be auto, on or off", p)
	}
	if err := httpbench.CheckTools(); err != nil {
		return badInput("%v", err)
	}
	rep, err := httpbench.Run(c.Context, httpbench.Options{
		Binary: c.String("binary"), Quick: c.Bool("quick"), Duration: c.Duration("duration"),
		Connections: c.Int("connections"), ReplyPath: c.String("reply-path"), Prefilter: c.String("prefilter"), Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	js, png, err := rep.WriteFiles(c.String("out"))
	if err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", js, png)
	return rep.Errors()
}

// addBenchCommand adds a subcommand to shoal bench, from another file's
// init (Go runs a package's init functions in file-name order, so bench.go
// registers bench first).
func addBenchCommand(cmd *cli.Command) {
	for _, c := range commands {
		if c.Name == "bench" {
			c.Subcommands = append(c.Subcommands, cmd)
			return
		}
	}
	panic("no bench command registered before " + cmd.Name)
}

// benchLog writes a benchmark's progress lines to stderr.
func benchLog(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) }

// labBench is what a benchmark that runs its own lab needs: the shoal
// binary its nodes run, where the lab's own steps go (stderr with
// --verbose, else nowhere), and a context that ^C or SIGTERM cancels, so
// the lab is torn down before the command returns.
func labBench(c *cli.Context) (bin string, labLog io.Writer, ctx context.Context, stop func(), err error) {
	if bin, err = os.Executable(); err != nil {
		return "", nil, nil, nil, err
	}
	if c.Bool("verbose") {
		labLog = os.Stderr
	}
	ctx, stop = signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	return bin, labLog, ctx, stop, nil
}
