package e2e

import (
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/lab"
)

// workerTaskFile reads file (stat, schedstat) of node id's worker thread,
// its rte-worker-* task.
func workerTaskFile(t *testing.T, id, file string) string {
	t.Helper()
	pid := nodePID(t, id)
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		dir := "/proc/" + pid + "/task/" + tk.Name()
		comm, _ := os.ReadFile(dir + "/comm")
		if !strings.HasPrefix(string(comm), "rte-worker") {
			continue
		}
		st, err := os.ReadFile(dir + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		return string(st)
	}
	t.Fatalf("%s (pid %s) has no rte-worker thread", id, pid)
	return ""
}

// workerCPU is the CPU time (ticks of 10 ms) the worker thread of node id
// has used: utime + stime of its rte-worker-* thread.
func workerCPU(t *testing.T, id string) uint64 {
	t.Helper()
	u, k := statTimes(workerTaskFile(t, id, "stat"))
	return u + k
}

var pingTime = regexp.MustCompile(`icmp_seq=(\d+) .*time=([0-9.]+) ms`)

// pingVIP pings the VIP count times from the client and returns the round
// trip of each reply (one entry per reply, duplicates included).
func pingVIP(t *testing.T, count int, interval string) (rtts []float64, seqs map[int]int, out string) {
	t.Helper()
	out = run(t, "client", "ping", "-n", "-c", strconv.Itoa(count), "-i", interval, "-W", "1", lab.VIP)
	seqs = map[int]int{}
	for _, m := range pingTime.FindAllStringSubmatch(out, -1) {
		s, _ := strconv.Atoi(m[1])
		v, _ := strconv.ParseFloat(m[2], 64)
		seqs[s]++
		rtts = append(rtts, v)
	}
	return rtts, seqs, out
}

func percentile(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(p*float64(len(s)-1))]
}

// TestIdleWorker: an idle node's worker uses under 5% of a core, and a
// packet reaching it waits about the idle sleep cap at most: pings spaced
// 100 ms apart, each meeting a sleeping worker, come back with a median
// round trip within the cap plus 0.25 ms; the lab's worker sleeps on its
// devices' descriptors, and then within 0.25 ms (docs/dataplane.md,
// Workers and idle).
func TestIdleWorker(t *testing.T) {
	l := up(t, lab.Options{Nodes: 1})
	cfg, err := l.NodeConfig(1)
	if err != nil {
		t.Fatal(err)
	}
	capMS := float64(cfg.Dataplane.IdleSleepMaxUS) / 1000
	time.Sleep(2 * time.Second) // past the start's own traffic
	s0 := stats(t, "n1")
	before, t0 := workerCPU(t, "n1"), time.Now()
	time.Sleep(10 * time.Second)
	used := float64(workerCPU(t, "n1")-before) / 100 / time.Since(t0).Seconds()
	s1 := stats(t, "n1")
	t.Logf("idle worker: %.1f%% of a core (idle_sleep_max_us %d); %d frames in, %d from the kernel, %d polls, %d sleeps",
		100*used, cfg.Dataplane.IdleSleepMaxUS, s1.Total.RX-s0.Total.RX, s1.Total.FromKernel-s0.Total.FromKernel,
		s1.Workers[0].Polls-s0.Workers[0].Polls, s1.Workers[0].IdleSleeps-s0.Workers[0].IdleSleeps)
	// The lab's devices (af_packet, tap) both give the worker a file
	// descriptor to sleep on; a worker back on timed sleeps has lost them.
	if w := s1.Workers[0].IdleWait; w != dataplane.IdleWaitFDs {
		t.Errorf("worker idle wait %q, want %q", w, dataplane.IdleWaitFDs)
	}
	if used >= 0.05 {
		t.Errorf("an idle worker uses %.1f%% of a core, want under 5%%", 100*used)
	}
	rtts, seqs, out := pingVIP(t, 40, "0.1")
	if len(seqs) != 40 {
		t.Fatalf("%d of 40 echoes answered:\n%s", len(seqs), out)
	}
	p50, p90 := percentile(rtts, 0.5), percentile(rtts, 0.9)
	t.Logf("ping to an idle node: median %.3f ms, p90 %.3f ms, max %.3f ms (cap %.3f ms)", p50, p90, percentile(rtts, 1), capMS)
	if p50 > capMS+0.25 {
		t.Errorf("median round trip %.3f ms, want at most the idle cap %.3f ms + 0.25 ms", p50, capMS)
	}
	// A worker sleeping on its devices wakes when the echo request
	// arrives, not when its sleep runs out: the median is the wake-up
	// latency (0.12 ms measured), well under half the cap.
	if s1.Workers[0].IdleWait == dataplane.IdleWaitFDs && p50 > 0.25 {
		t.Errorf("median round trip %.3f ms to a worker waiting on its devices, want at most 0.25 ms", p50)
	}
}
