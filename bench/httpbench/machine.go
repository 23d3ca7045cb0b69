package httpbench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/lab"
)

// machineBusy reads the whole machine's busy time from /proc/stat, in
// seconds summed over all CPUs: user, nice, system, irq, softirq and steal
// (guest time is already inside user and nice). Idle and iowait are not
// busy. It counts what no per-process figure can: softirq work that runs
// on whatever thread or idle CPU the packet met (the kernel receive work
// of the peers, the client's), and every process of the machine, the
// client (wrk) and anything else the machine runs meanwhile.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("bench http: %w", err)
	}
	return parseProcStat(string(b))
}

// parseProcStat reads the busy seconds of /proc/stat's "cpu" line.
func parseProcStat(s string) (float64, error) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		// cpu user nice system idle iowait irq softirq steal [guest guest_nice]
		if len(f) < 9 {
			return 0, fmt.Errorf("bench http: /proc/stat cpu line has %d fields, want at least 9: %q", len(f), line)
		}
		var busy uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench http: /proc/stat cpu field %d: %v", i, err)
			}
			busy += v
		}
		return float64(busy) / clockTick, nil
	}
	return 0, fmt.Errorf("bench http: /proc/stat has no cpu line")
}

// pfKthread is PF_KTHREAD in /proc/PID/stat's flags.
const pfKthread = 0x00200000

// othersBusy reads the CPU time, in ticks, of each of the machine's
// processes that are not the benchmark's: outside the lab's namespaces
// (shoal-*), not kernel threads (their work, softirq included, may be the
// lab's). Each counts its own time (utime+stime, its exited threads
// included), not its reaped children's: a child's lifetime would land in
// one cell however long ago it ran. Keys are PID and start time, so a
// reused PID is another process. This process is included; its own
// sampling is not the system's work either.
func othersBusy() (map[string]uint64, error) {
	inLab := map[string]bool{}
	names, _ := filepath.Glob("/run/netns/" + lab.NSPrefix + "*")
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				inLab[fmt.Sprintf("net:[%d]", st.Ino)] = true
			}
		}
	}
	if len(inLab) == 0 {
		return nil, fmt.Errorf("bench http: no lab namespace under /run/netns")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("bench http: %w", err)
	}
	out := make(map[string]uint64, len(entries))
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		ns, err := os.Readlink("/proc/" + pid + "/ns/net")
		if err != nil || inLab[ns] {
			continue // gone, or the lab's
		}
		raw, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		if st, ok := parseStat(string(raw)); ok && !st.kernelThread() {
			out[pid+"@"+st.start] = st.ticks
		}
	}
	return out, nil
}

// othersDelta is the CPU, in seconds, other processes spent between two
// othersBusy readings: each one's growth, and all of a new one's time
// (it started in between). A process that exited in between is lost, so
// readings are taken often (othersSampler).
func othersDelta(before, after map[string]uint64) float64 {
	var ticks uint64
	for k, a := range after {
		if b := before[k]; a > b {
			ticks += a - b
		}
	}
	return float64(ticks) / clockTick
}

// othersInterval is how often othersSampler reads /proc: a process of
// another user that lives longer than this is counted but for its last
// interval.
const othersInterval = 100 * time.Millisecond

// othersSampler sums othersDelta over readings of othersBusy every
// othersInterval, from a first reading taken by startOthersSampler to a
// last one taken by stop.
type othersSampler struct {
	stopc chan struct{}
	out   chan othersResult
}

// startOthersSampler takes the first reading before it returns, so that
// the span it measures starts before whatever the caller reads next.
func startOthersSampler() (*othersSampler, error) {
	prev, err := othersBusy()
	if err != nil {
		return nil, err
	}
	s := &othersSampler{stopc: make(chan struct{}), out: make(chan othersResult, 1)}
	go s.run(prev)
	return s, nil
}

func (s *othersSampler) run(prev map[string]uint64) {
	var sum float64
	t := time.NewTicker(othersInterval)
	defer t.Stop()
	for {
		done := false
		select {
		case <-s.stopc:
			done = true
		case <-t.C:
		}
		cur, err := othersBusy()
		if err != nil {
			s.out <- othersResult{err: err}
			return
		}
		sum += othersDelta(prev, cur)
		prev = cur
		if done {
			s.out <- othersResult{seconds: sum}
			return
		}
	}
}

// stop takes the last reading and returns the sum (or the first error);
// call it once.
func (s *othersSampler) stop() othersResult {
	close(s.stopc)
	return <-s.out
}

type othersResult struct {
	seconds float64
	err     error
}
