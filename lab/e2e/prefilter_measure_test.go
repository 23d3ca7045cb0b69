package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/lab"
)

// workerCPUns is the CPU time in ns the worker thread of node id has used
// (its schedstat: more precise than the 10 ms ticks of stat).
func workerCPUns(t *testing.T, id string) uint64 {
	t.Helper()
	v, _ := strconv.ParseUint(strings.Fields(workerTaskFile(t, id, "schedstat"))[0], 10, 64)
	return v
}

var wrkRequests = regexp.MustCompile(`(\d+) requests in`)

// TestPrefilterMeasure measures what the prefilter saves (docs/benchmarks.md,
// sixth pass): a 3-node lab with the prefilter on and one with it off,
// alternated rounds times, each under `wrk -t2 -c12 -d10s` for /obj/1k
// with a fresh connection per request and with keep-alive. Per run: the
// workers' CPU per 1,000 requests, and per node the wake-ups (idle sleeps
// that ended) and the worker's received frames per client segment (client
// segments: what n-th node's worker received plus what its filter dropped,
// the same for every node). Set SHOAL_PREFILTER_MEASURE=rounds to run it.
func TestPrefilterMeasure(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("SHOAL_PREFILTER_MEASURE"))
	if rounds < 1 {
		t.Skip("a measurement, not a check: SHOAL_PREFILTER_MEASURE=2 runs two rounds")
	}
	type cell struct {
		reqs                  uint64
		cpuNS                 [3]uint64
		rx, pf, sleeps, polls [3]uint64
	}
	measure := func(mode, workload string) cell {
		var c cell
		ids := []string{"n1", "n2", "n3"}
		cpu0 := [3]uint64{}
		st0 := [3]struct{ rx, pf, sleeps, polls uint64 }{}
		for i, id := range ids {
			cpu0[i] = workerCPUns(t, id)
			s := stats(t, id)
			st0[i].rx, st0[i].pf = s.Total.RX, s.Prefilter.ForeignDropped+s.Prefilter.SynNotOurs+s.Prefilter.SynPortDropped
			st0[i].sleeps, st0[i].polls = s.Workers[0].IdleSleeps, s.Workers[0].Polls
		}
		args := []string{"wrk", "-t2", "-c12", "-d10s"}
		if workload == "fresh" {
			args = append(args, "-H", "Connection: close")
		}
		out := run(t, "client", append(args, "http://"+lab.VIP+"/obj/1k")...)
		m := wrkRequests.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("wrk printed no request count:\n%s", out)
		}
		c.reqs, _ = strconv.ParseUint(m[1], 10, 64)
		for i, id := range ids {
			c.cpuNS[i] = workerCPUns(t, id) - cpu0[i]
			s := stats(t, id)
			c.rx[i] = s.Total.RX - st0[i].rx
			c.pf[i] = s.Prefilter.ForeignDropped + s.Prefilter.SynNotOurs + s.Prefilter.SynPortDropped - st0[i].pf
			c.sleeps[i] = s.Workers[0].IdleSleeps - st0[i].sleeps
			c.polls[i] = s.Workers[0].Polls - st0[i].polls
		}
		var cpu uint64
		line := fmt.Sprintf("%-4s %-10s %6d req", mode, workload, c.reqs)
		for i := range ids {
			cpu += c.cpuNS[i]
			seg := float64(c.rx[i] + c.pf[i])
			line += fmt.Sprintf(" | %s rx/seg %.2f wake/seg %.3f cpu/seg %.1fus", ids[i],
				float64(c.rx[i])/seg, float64(c.sleeps[i])/seg, float64(c.cpuNS[i])/1e3/seg)
		}
		line += fmt.Sprintf(" | workers %.3f s per 1,000 req", float64(cpu)/1e9/float64(c.reqs)*1000)
		t.Log(line)
		return c
	}
	for r := 0; r < rounds; r++ {
		for _, mode := range []string{"on", "off"} {
			func() {
				l := up(t, lab.Options{Nodes: 3, Configure: func(id string, c *config.Config) { c.Dataplane.Prefilter = mode }})
				defer lab.Down()
				_ = l
				for _, w := range []string{"fresh", "keep-alive"} {
					measure(mode, w)
				}
			}()
		}
	}
}
