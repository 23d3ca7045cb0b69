package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/lab"
)

// procCPU is what the node's Go process (its threads but the rte-worker)
// and its worker used: utime and stime in clock ticks, and the context
// switches of all its threads.
type procCPU struct {
	goUser, goSys, wkUser, wkSys uint64
	vcsw, nvcsw                  uint64
}

// statTimes are utime and stime (clock ticks) of a /proc stat line.
func statTimes(s string) (u, k uint64) {
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ = strconv.ParseUint(f[11], 10, 64)
	k, _ = strconv.ParseUint(f[12], 10, 64)
	return u, k
}

// nodePID is node id's process ID, from the lab's PID file.
func nodePID(t *testing.T, id string) string {
	t.Helper()
	raw, err := os.ReadFile(lab.PIDPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// readProcCPU reads node id's process: the whole process's utime/stime
// (dead threads included) less its worker thread's.
func readProcCPU(t *testing.T, id string) procCPU {
	t.Helper()
	pid := nodePID(t, id)
	var c procCPU
	st, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	u, k := statTimes(string(st))
	c.wkUser, c.wkSys = statTimes(workerTaskFile(t, id, "stat"))
	c.goUser, c.goSys = u-c.wkUser, k-c.wkSys
	tasks, _ := os.ReadDir("/proc/" + pid + "/task")
	for _, tk := range tasks {
		b, _ := os.ReadFile("/proc/" + pid + "/task/" + tk.Name() + "/status")
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			v, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "voluntary_ctxt_switches:":
				c.vcsw += v
			case "nonvoluntary_ctxt_switches:":
				c.nvcsw += v
			}
		}
	}
	return c
}

// ipis sums the CAL (function call) and RES (rescheduling) interrupt
// counts of every CPU in /proc/interrupts.
func ipis(t *testing.T) (cal, res uint64) {
	t.Helper()
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "CAL:" && f[0] != "RES:") {
			continue
		}
		var n uint64
		for _, x := range f[1:] {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				break
			}
			n += v
		}
		if f[0] == "CAL:" {
			cal = n
		} else {
			res = n
		}
	}
	return cal, res
}

// TestFreshMeasure is issue 14's seventh-pass measurement of a fresh 1 KiB
// request (docs/benchmarks.md): a 3-node lab per binary (the worktree's,
// then each of SHOAL_FRESH_BINARIES, space-separated, alternated rounds
// times), under `wrk -t2 -c12 -d10s -H 'Connection: close'` for /obj/1k.
// Per run: the Go process's and the workers' utime and stime per 1,000
// requests, context switches and IPIs per request; then one keep-alive
// run for comparison. With SHOAL_FRESH_TRACE
// set to a directory, one more run per lab is traced with `strace -c -f`
// of n1 and one recorded with `perf record -F 4999 -g` of n1, into that directory.
// Set SHOAL_FRESH_MEASURE=rounds to run it.
func TestFreshMeasure(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("SHOAL_FRESH_MEASURE"))
	if rounds < 1 {
		t.Skip("a measurement, not a check: SHOAL_FRESH_MEASURE=1 runs one round")
	}
	traceDir := os.Getenv("SHOAL_FRESH_TRACE")
	ids := []string{"n1", "n2", "n3"}
	hz := 100.0 // USER_HZ
	keepAlive := false
	wrk := func() uint64 {
		args := []string{"wrk", "-t2", "-c12", "-d10s", "-H", "Connection: close", "http://" + lab.VIP + "/obj/1k"}
		if keepAlive {
			args = append(args[:4], args[6:]...)
		}
		out := run(t, "client", args...)
		m := wrkRequests.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("wrk printed no request count:\n%s", out)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	measure := func(name string) {
		var c0 [3]procCPU
		for i, id := range ids {
			c0[i] = readProcCPU(t, id)
		}
		cal0, res0 := ipis(t)
		reqs := wrk()
		cal1, res1 := ipis(t)
		var d procCPU
		for i, id := range ids {
			c := readProcCPU(t, id)
			d.goUser += c.goUser - c0[i].goUser
			d.goSys += c.goSys - c0[i].goSys
			d.wkUser += c.wkUser - c0[i].wkUser
			d.wkSys += c.wkSys - c0[i].wkSys
			d.vcsw += c.vcsw - c0[i].vcsw
			d.nvcsw += c.nvcsw - c0[i].nvcsw
		}
		per := func(ticks uint64) float64 { return float64(ticks) / hz / float64(reqs) * 1000 }
		r := float64(reqs)
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("%-12s %6d req | Go process user %.3f sys %.3f | workers user %.3f sys %.3f s per 1,000 req | "+
			"Go csw/req %.2f vol + %.2f invol | IPIs/req CAL %.2f RES %.2f | load %s",
			name, reqs, per(d.goUser), per(d.goSys), per(d.wkUser), per(d.wkSys),
			float64(d.vcsw)/r, float64(d.nvcsw)/r, float64(cal1-cal0)/r, float64(res1-res0)/r,
			strings.Join(strings.Fields(string(load))[:3], " "))
	}
	// traced runs wrk while tool (strace or perf) watches n1 for 6 s.
	traced := func(name, tool string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pid := nodePID(t, "n1")
		var cmd *exec.Cmd
		switch tool {
		case "strace":
			cmd = exec.CommandContext(ctx, "timeout", "-s", "INT", "6", "strace", "-c", "-f", "-p", pid,
				"-o", filepath.Join(traceDir, name+".strace"))
		case "perf":
			cmd = exec.CommandContext(ctx, "perf", "record", "-F", "4999", "-g", "-p", pid,
				"-o", filepath.Join(traceDir, name+".perf"), "--", "sleep", "6")
		}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		done := make(chan uint64, 1)
		go func() { done <- wrk() }()
		time.Sleep(2 * time.Second)
		if err := cmd.Run(); err != nil && tool == "perf" {
			t.Logf("%s %s: %v", name, tool, err)
		}
		t.Logf("%s %s run: %d requests", name, tool, <-done)
	}
	bins := append([]string{""}, strings.Fields(os.Getenv("SHOAL_FRESH_BINARIES"))...)
	for r := 0; r < rounds; r++ {
		for bi, bin := range bins {
			func() {
				opts := lab.Options{Nodes: 3, Binary: bin}
				up(t, opts)
				defer lab.Down()
				name := fmt.Sprintf("b%d", bi)
				wrk() // warm-up: caches, goroutines, the nodes' tables
				measure(name)
				measure(name)
				keepAlive = true
				measure(name + " keep")
				keepAlive = false
				if traceDir != "" && r == 0 {
					traced(name, "strace")
					traced(name, "perf")
				}
			}()
		}
	}
}
