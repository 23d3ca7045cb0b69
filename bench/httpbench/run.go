package httpbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/lab"
)

// Options configure a run.
type Options struct {
	// Binary is the shoal binary for the lab's nodes ("" = this one).
	Binary string
	// Quick is the CI smoke mode: short runs, few connections, no idle
	// sample; it checks that every system answers, not how fast.
	Quick bool
	// Duration of each wrk run; zero means 5 s (1 s when Quick).
	Duration time.Duration
	// Connections of wrk (2 threads); zero means 12 (4 when Quick).
	Connections int
	// ReplyPath of the shoal nodes ("" = auto, kernel in the lab).
	ReplyPath string
	// Prefilter is the shoal nodes' dataplane.prefilter ("" = auto, on
	// in the lab), to measure the nodes with and without it.
	Prefilter string
	// Log receives progress lines; nil discards them.
	Log io.Writer

	start time.Time
}

// System names.
const (
	Shoal   = "shoal"
	HAProxy = "haproxy"
	Plain   = "plain"
)

// Systems in the order of every table and plot.
var Systems = []string{Shoal, HAProxy, Plain}

// Cell is one system under one load.
type Cell struct {
	System     string  `json:"system"`
	Object     string  `json:"object"` // "1k" or "1m"
	Mode       string  `json:"mode"`   // "keep-alive" or "fresh"
	Requests   int64   `json:"requests"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"requests_per_sec"`
	MBps       float64 `json:"mb_per_sec"` // 10^6 bytes per second, headers included
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPer1000 float64 `json:"cpu_seconds_per_1000_requests"`
	// WorkerCPUSeconds is the part of CPUSeconds spent by shoal's DPDK
	// worker lcores (zero for the peers).
	WorkerCPUSeconds float64 `json:"worker_cpu_seconds"`
	// MachineCPUSeconds is the whole machine's busy time during the cell
	// (/proc/stat, all CPUs, softirq included): the system, the client
	// and anything else running. OthersCPUSeconds is the part of it spent
	// by other processes (othersSampler: outside the lab, this one's
	// sampling included), IdleSystemsCPUSeconds the part spent by the
	// processes of the two systems not measured in the cell, which stay up
	// and idle (gossip, health checks, the workers' polling). MachinePer1000
	// is the machine's time less both, per 1,000 requests: what the
	// benchmark cost the machine, the client's and the kernel's work
	// wherever it ran included.
	MachineCPUSeconds     float64 `json:"machine_cpu_seconds"`
	OthersCPUSeconds      float64 `json:"others_cpu_seconds"`
	IdleSystemsCPUSeconds float64 `json:"idle_systems_cpu_seconds"`
	MachinePer1000        float64 `json:"machine_cpu_seconds_per_1000_requests"`
	Connections           int     `json:"connections"`
}

// Goal is one target of issue 14, computed from the cells.
type Goal struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Kind says how Value compares to Limit: "at least" or "at most".
	Kind string `json:"kind"`
	Met  bool   `json:"met"`
}

// Report is one run's result, written as JSON.
type Report struct {
	Date      string  `json:"date"`
	Commit    string  `json:"commit"`
	Machine   Machine `json:"machine"`
	Quick     bool    `json:"quick"`
	ReplyPath string  `json:"shoal_reply_path"`
	// Prefilter says whether n1's in-kernel prefilter was active.
	Prefilter bool               `json:"shoal_prefilter"`
	Cells     []Cell             `json:"cells"`
	IdleCPU   map[string]float64 `json:"idle_cpu_percent_per_node,omitempty"`
	// IdleWorkerCPU is the part of IdleCPU spent by the node's worker
	// lcore; the rest is gossip, health checks and the Go runtime.
	IdleWorkerCPU map[string]float64 `json:"idle_worker_cpu_percent_per_node,omitempty"`
	Goals         []Goal             `json:"goals"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Cell returns the cell of system, object and mode.
func (r *Report) Cell(system, object, mode string) (Cell, bool) {
	for _, c := range r.Cells {
		if c.System == system && c.Object == object && c.Mode == mode {
			return c, true
		}
	}
	return Cell{}, false
}

// requiredTools are the programs a run needs, with their Debian package.
var requiredTools = []struct{ cmd, pkg string }{
	{"wrk", "wrk"}, {"haproxy", "haproxy"}, {"nginx", "nginx-light"},
}

// CheckTools names the first missing program and its package.
func CheckTools() error {
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t.cmd); err != nil {
			return fmt.Errorf("bench http: %s not found: install the %s package (make deps)", t.cmd, t.pkg)
		}
	}
	return nil
}

func (o *Options) logf(format string, a ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "bench http: %5.1fs "+format+"\n", append([]any{time.Since(o.start).Seconds()}, a...)...)
	}
}

// namespaces of each system: CPU is counted over every process in them.
func namespaces(system string) []string {
	switch system {
	case Shoal:
		return []string{"n1", "n2", "n3"}
	case HAProxy:
		out := []string{lab.HostID(hostHAProxy)}
		for _, k := range originHosts {
			out = append(out, lab.HostID(k))
		}
		return out
	}
	return []string{lab.HostID(hostPlain)}
}

// idleNamespaces are the namespaces of the systems other than system,
// which stay up, idle, while system's cell runs.
func idleNamespaces(system string) []string {
	var out []string
	for _, s := range Systems {
		if s != system {
			out = append(out, namespaces(s)...)
		}
	}
	return out
}

func address(system string) string {
	switch system {
	case Shoal:
		return lab.VIP
	case HAProxy:
		return lab.HostIP(hostHAProxy)
	}
	return lab.HostIP(hostPlain)
}

// Run builds the lab and the peers, runs every cell and tears it all down.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	o.start = time.Now()
	if err := CheckTools(); err != nil {
		return nil, err
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
		if o.Quick {
			o.Duration = time.Second
		}
	}
	if o.Connections == 0 {
		o.Connections = 12
		if o.Quick {
			o.Connections = 4
		}
	}
	if o.Duration < time.Second || o.Duration > 10*time.Minute || o.Duration%time.Second != 0 {
		return nil, fmt.Errorf("bench http: duration %v must be whole seconds between 1s and 10m (wrk counts in seconds)", o.Duration)
	}
	if o.Connections < 2 || o.Connections > 1000 {
		return nil, fmt.Errorf("bench http: %d connections must be between 2 and 1000", o.Connections)
	}
	o.logf("building the lab: 3 shoal nodes (reply path %s, prefilter %s), HAProxy + 3 nginx, one plain nginx", orAuto(o.ReplyPath), orAuto(o.Prefilter))
	lo := lab.Options{Nodes: 3, Binary: o.Binary, ReplyPath: o.ReplyPath, Log: o.Log}
	if o.Prefilter != "" {
		lo.Configure = func(_ string, c *config.Config) { c.Dataplane.Prefilter = o.Prefilter }
	}
	l, err := lab.Up(ctx, lo)
	if err != nil {
		return nil, err
	}
	defer lab.DownInto(&err)
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		return nil, err
	}
	var peers []*peer
	defer func() {
		for _, p := range peers {
			p.stop()
		}
	}()
	for k := 1; k <= hostPlain; k++ {
		if err := lab.AddHost(ctx, k); err != nil {
			return nil, err
		}
	}
	var origins []string
	for _, k := range append(append([]int{}, originHosts...), hostPlain) {
		p, err := startNginx(k)
		if err != nil {
			return nil, err
		}
		peers = append(peers, p)
		if k != hostPlain {
			origins = append(origins, lab.HostIP(k))
		}
	}
	hp, err := startHAProxy(origins)
	if err != nil {
		return nil, err
	}
	peers = append(peers, hp)
	for _, s := range Systems {
		if err := waitAnswer(ctx, s, peers); err != nil {
			return nil, err
		}
	}
	o.logf("every system answers")
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Commit: commit(), Machine: machine(),
		Quick: o.Quick, ReplyPath: replyPathOf(l), Prefilter: prefilterOf(l)}
	if !o.Quick {
		idle, worker, err := idleCPU(ctx, 5*time.Second)
		if err != nil {
			return nil, err
		}
		rep.IdleCPU, rep.IdleWorkerCPU = idle, worker
	}
	for _, obj := range []string{"1k", "1m"} {
		for _, mode := range []string{"keep-alive", "fresh"} {
			for _, s := range Systems {
				c, err := runCell(ctx, o, s, obj, mode)
				if err != nil {
					return nil, err
				}
				for _, p := range peers {
					if err := p.exited(); err != nil {
						return nil, err
					}
				}
				o.logf("%-8s %-3s %-10s %9.0f req/s %8.1f MB/s  p50 %6.2f ms  p99 %7.2f ms  errors %d  CPU %.3f s/1000 req, machine %.3f (others %.2f cores)",
					s, obj, mode, c.RPS, c.MBps, c.P50ms, c.P99ms, c.Errors, c.CPUPer1000, c.MachinePer1000, c.othersCores())
				rep.Cells = append(rep.Cells, c)
			}
		}
	}
	rep.Goals = goals(rep)
	return rep, nil
}

func orAuto(s string) string {
	if s == "" {
		return "auto"
	}
	return s
}

// replyPathOf asks n1 which reply path it runs.
func replyPathOf(l *lab.Lab) string {
	var st api.Status
	if err := api.Get(lab.SocketPath(l.NodeIDs()[0]), api.PathStatus, &st); err != nil {
		return "unknown"
	}
	return st.ReplyPath.Mode
}

// prefilterOf asks n1 whether its in-kernel prefilter is active.
func prefilterOf(l *lab.Lab) bool {
	var st api.Status
	return api.Get(lab.SocketPath(l.NodeIDs()[0]), api.PathStatus, &st) == nil && st.Prefilter.Active
}

// waitAnswer polls GET /obj/1k of a system from the client until it
// answers 200 with 1024 bytes.
func waitAnswer(ctx context.Context, system string, peers []*peer) error {
	client := lab.HTTPClient("client")
	client.Transport.(*http.Transport).DisableKeepAlives = true
	client.Timeout = time.Second
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		for _, p := range peers {
			if err := p.exited(); err != nil {
				return err
			}
		}
		resp, err := client.Get("http://" + address(system) + "/obj/1k")
		if err == nil {
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && n == 1024 {
				return nil
			}
			err = fmt.Errorf("status %s, %d bytes", resp.Status, n)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench http: %s at %s does not answer GET /obj/1k: %v", system, address(system), last)
}

func runCell(ctx context.Context, o Options, system, obj, mode string) (Cell, error) {
	url := "http://" + address(system) + "/obj/" + obj
	argv := []string{"wrk", "-t2", "-c" + strconv.Itoa(o.Connections), "-d" + strconv.Itoa(int(o.Duration.Round(time.Second)/time.Second)) + "s",
		"--timeout", "5s", "--latency"}
	if mode == "fresh" {
		argv = append(argv, "-H", "Connection: close")
	}
	argv = append(argv, url)
	before, wbefore, err := cpuSeconds(ctx, namespaces(system))
	if err != nil {
		return Cell{}, err
	}
	idle := idleNamespaces(system)
	ibefore, _, err := cpuSeconds(ctx, idle)
	if err != nil {
		return Cell{}, err
	}
	// The others' first reading is taken before the machine's and their
	// last one before the machine's last, so both cover the same span.
	others, err := startOthersSampler()
	if err != nil {
		return Cell{}, err
	}
	mbefore, err := machineBusy()
	if err != nil {
		others.stop()
		return Cell{}, err
	}
	cmd := lab.Exec(ctx, "client", argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	o2 := others.stop()
	mafter, merr := machineBusy()
	if err != nil {
		return Cell{}, fmt.Errorf("bench http: %s: %v: %s", strings.Join(argv, " "), err, errb.String())
	}
	if merr != nil {
		return Cell{}, merr
	}
	if o2.err != nil {
		return Cell{}, o2.err
	}
	after, wafter, err := cpuSeconds(ctx, namespaces(system))
	if err != nil {
		return Cell{}, err
	}
	iafter, _, err := cpuSeconds(ctx, idle)
	if err != nil {
		return Cell{}, err
	}
	w, err := ParseWrk(out.String())
	if err != nil {
		return Cell{}, fmt.Errorf("bench http: %s: %w", system, err)
	}
	c := Cell{System: system, Object: obj, Mode: mode, Requests: w.Requests, Seconds: w.Duration.Seconds(),
		P50ms: ms(w.P50), P99ms: ms(w.P99), Errors: w.Errors, CPUSeconds: after - before, WorkerCPUSeconds: wafter - wbefore,
		MachineCPUSeconds: mafter - mbefore, OthersCPUSeconds: o2.seconds, IdleSystemsCPUSeconds: iafter - ibefore,
		Connections: o.Connections}
	if c.Seconds > 0 {
		c.RPS = float64(w.Requests) / c.Seconds
		c.MBps = w.BytesRead / c.Seconds / 1e6
	}
	if w.Requests > 0 {
		c.CPUPer1000 = c.CPUSeconds / (float64(w.Requests) / 1000)
		c.MachinePer1000 = (c.MachineCPUSeconds - c.OthersCPUSeconds - c.IdleSystemsCPUSeconds) / (float64(w.Requests) / 1000)
	}
	return c, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// othersCores is other users' CPU during the cell in cores.
func (c Cell) othersCores() float64 {
	if c.Seconds <= 0 {
		return 0
	}
	return c.OthersCPUSeconds / c.Seconds
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTick = 100

// cpuSeconds sums utime+stime of every thread of every process in the lab
// namespaces of where; worker is the part spent by DPDK worker lcores
// (threads named rte-worker-N), which poll while traffic flows.
func cpuSeconds(ctx context.Context, where []string) (total, worker float64, err error) {
	var ticks, wticks uint64
	for _, w := range where {
		ns, err := lab.ParseWhere(w)
		if err != nil {
			return 0, 0, err
		}
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("bench http: ip netns pids %s: %v", ns, err)
		}
		for _, pid := range strings.Fields(string(out)) {
			tasks, _ := os.ReadDir("/proc/" + pid + "/task")
			for _, task := range tasks {
				raw, err := os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/stat")
				if err != nil {
					continue // exited meanwhile
				}
				st, ok := parseStat(string(raw))
				if !ok {
					continue
				}
				ticks += st.ticks
				if strings.HasPrefix(st.name, "rte-worker") {
					wticks += st.ticks
				}
			}
		}
	}
	return float64(ticks) / clockTick, float64(wticks) / clockTick, nil
}

// procStat is what the benchmark reads of a /proc/PID/stat or
// /proc/PID/task/TID/stat line.
type procStat struct {
	name  string // the command name, without its parentheses
	flags uint64 // PF_* flags
	ticks uint64 // utime+stime (not the reaped children's), in clock ticks
	start string // starttime, as written: with the PID, names one process
}

// kernelThread reports a kernel thread (PF_KTHREAD).
func (p procStat) kernelThread() bool { return p.flags&pfKthread != 0 }

// parseStat reads a stat line; false for one it cannot read. The name may
// hold spaces and parentheses: the fields start after its last ')'.
func parseStat(s string) (procStat, bool) {
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || close+2 > len(s) {
		return procStat{}, false
	}
	f := strings.Fields(s[close+2:])
	// After the name: state is field 3, flags 9, utime 14, stime 15,
	// starttime 22.
	if len(f) < 20 {
		return procStat{}, false
	}
	p := procStat{name: s[open+1 : close], start: f[19]}
	var err error
	if p.flags, err = strconv.ParseUint(f[6], 10, 64); err != nil {
		return procStat{}, false
	}
	for _, i := range []int{11, 12} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return procStat{}, false
		}
		p.ticks += v
	}
	return p, true
}

// idleCPU samples each shoal node's CPU over d with no load, in percent
// of one core: the whole process, and its DPDK worker lcore alone.
func idleCPU(ctx context.Context, d time.Duration) (total, worker map[string]float64, err error) {
	ids := namespaces(Shoal)
	type sample struct{ t, w float64 }
	before := map[string]sample{}
	for _, id := range ids {
		t, w, err := cpuSeconds(ctx, []string{id})
		if err != nil {
			return nil, nil, err
		}
		before[id] = sample{t, w}
	}
	t0 := time.Now()
	time.Sleep(d)
	el := time.Since(t0).Seconds()
	total, worker = map[string]float64{}, map[string]float64{}
	for _, id := range ids {
		t, w, err := cpuSeconds(ctx, []string{id})
		if err != nil {
			return nil, nil, err
		}
		total[id] = 100 * (t - before[id].t) / el
		worker[id] = 100 * (w - before[id].w) / el
	}
	return total, worker, nil
}

func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "+dirty"
			}
			return rev
		}
	}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return "unknown"
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// goals computes issue 14's targets from the cells.
func goals(r *Report) []Goal {
	var out []Goal
	ratio := func(name string, a, b Cell, okA, okB bool, limit float64, kind string, f func(Cell) float64) {
		if !okA || !okB || f(b) == 0 {
			return
		}
		v := f(a) / f(b)
		met := v >= limit
		if kind == "at most" {
			met = v <= limit
		}
		out = append(out, Goal{Name: name, Value: v, Limit: limit, Kind: kind, Met: met})
	}
	mbps := func(c Cell) float64 { return c.MBps }
	cpu := func(c Cell) float64 { return c.CPUPer1000 }
	machineCPU := func(c Cell) float64 { return c.MachinePer1000 }
	s, okS := r.Cell(Shoal, "1m", "keep-alive")
	h, okH := r.Cell(HAProxy, "1m", "keep-alive")
	p, okP := r.Cell(Plain, "1m", "keep-alive")
	ratio("1 MiB keep-alive MB/s, shoal / haproxy", s, h, okS, okH, 2, "at least", mbps)
	ratio("1 MiB keep-alive MB/s, shoal / plain", s, p, okS, okP, 0.5, "at least", mbps)
	for _, mode := range []string{"keep-alive", "fresh"} {
		s, okS := r.Cell(Shoal, "1k", mode)
		h, okH := r.Cell(HAProxy, "1k", mode)
		ratio("1 KiB "+mode+" CPU-s/1000 req, shoal / haproxy", s, h, okS, okH, 1, "at most", cpu)
	}
	// The same with the whole machine's CPU (docs/benchmarks.md says what
	// each accounting counts).
	for _, mode := range []string{"keep-alive", "fresh"} {
		s, okS := r.Cell(Shoal, "1k", mode)
		h, okH := r.Cell(HAProxy, "1k", mode)
		ratio("1 KiB "+mode+" machine CPU-s/1000 req, shoal / haproxy", s, h, okS, okH, 1, "at most", machineCPU)
	}
	ids := make([]string, 0, len(r.IdleCPU))
	for id := range r.IdleCPU {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		v := r.IdleCPU[id]
		out = append(out, Goal{Name: "idle CPU % of a core, " + id, Value: v, Limit: 5, Kind: "at most", Met: v < 5})
	}
	return out
}

// Errors lists every cell that did not answer cleanly: no request
// completed, or wrk counted errors.
func (r *Report) Errors() error {
	var errs []error
	for _, c := range r.Cells {
		if c.Requests == 0 || c.Errors != 0 {
			errs = append(errs, fmt.Errorf("%s %s %s: %d requests, %d errors", c.System, c.Object, c.Mode, c.Requests, c.Errors))
		}
	}
	return errors.Join(errs...)
}
