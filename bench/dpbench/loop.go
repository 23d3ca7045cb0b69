package dpbench

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane"
)

// LoopReport is the real worker loop (dataplane.Runtime, worker.c) under
// traffic, before and while shoal flows dumps its table, and the cost of
// its command-ring check.
type LoopReport struct {
	Flows     int `json:"flows"`
	Templates int `json:"templates"`
	// Without a dump, over Window.
	Window         float64 `json:"window_seconds"`
	Mpps           float64 `json:"mpps"`
	NsPerIteration float64 `json:"ns_per_iteration"`
	MaxIterUS      float64 `json:"max_iter_us"`
	Switched       int     `json:"worker_switched_out"` // involuntary context switches of the worker thread
	// While Runtime.Flows (GET /v1/flows, shoal flows) dumps every flow.
	DumpSeconds    float64 `json:"dump_seconds"`
	DumpedFlows    int     `json:"dumped_flows"`
	DumpMpps       float64 `json:"dump_mpps"`
	DumpMaxIterUS  float64 `json:"dump_max_iter_us"`
	DumpSwitched   int     `json:"dump_worker_switched_out"`
	MaxIterBoundUS float64 `json:"max_iter_bound_us"`
	// The same dump from a worker without traffic, under SCHED_FIFO.
	QuietDumpSeconds   float64 `json:"quiet_dump_seconds"`
	QuietDumpMaxIterUS float64 `json:"quiet_dump_max_iter_us"`
	QuietDumpSwitched  int     `json:"quiet_dump_worker_switched_out"`
	EmptyPollNs        float64 `json:"empty_ring_poll_ns"`
	EmptyPollShare     float64 `json:"empty_ring_poll_share"` // of an iteration under traffic
	IdleSleepMaxUS     int     `json:"idle_sleep_max_us"`
	WorkerThreadID     int     `json:"worker_thread_id"`
	DumpChunkFlows     int     `json:"dump_chunk_flows"`
	ScanSlotsPerIter   int     `json:"scan_slots_per_iteration"`
}

// RunLoop runs one worker on the first worker lcore with o.Flows
// established flows, its NIC a net_null port replaying ACKs of o.Small of
// them, its tap a net_null port that receives nothing. It measures the loop
// for o.Duration, then dumps every flow with Runtime.Flows, then stops the
// worker and measures the empty command-ring check. Last, it dumps the
// flows again from a worker without traffic under SCHED_FIFO.
func RunLoop(o DataplaneOptions) (LoopReport, error) {
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Flows <= 0 {
		o.Flows = 1 << 20
	}
	if o.Small <= 0 {
		o.Small = 1 << 16
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if len(dpdk.WorkerLcores()) == 0 {
		return LoopReport{}, fmt.Errorf("bench: the EAL has no worker lcore")
	}
	rep := LoopReport{Flows: o.Flows, Templates: o.Small, MaxIterBoundUS: 500, IdleSleepMaxUS: 100,
		DumpChunkFlows: dataplane.DumpChunkFlows, ScanSlotsPerIter: dataplane.DumpScanSlots}

	logf("worker loop: %d established flows, ACKs of %d of them replayed", o.Flows, o.Small)
	keys := make([]byte, 0, 12*o.Flows)
	var frames [][]byte
	for i := 0; len(keys) < 12*o.Flows; i++ {
		src, sport := tuple(i)
		if !owned(dataplane.Bucket(dataplane.ConnValue(benchSeed, src, benchVIP, sport, 80))) {
			continue
		}
		if len(frames) < o.Small {
			frames = append(frames, template(src, sport, 80, false))
		}
		a, v := src.As4(), benchVIP.As4()
		keys = append(keys, a[:]...)
		keys = append(keys, v[:]...)
		keys = binary.BigEndian.AppendUint16(keys, sport)
		keys = binary.BigEndian.AppendUint16(keys, 80)
	}
	tr, err := startLoop(o, rep.IdleSleepMaxUS, keys, frames, 3)
	if err != nil {
		return rep, err
	}
	defer tr.close()
	rt := tr.rt
	rep.WorkerThreadID = rt.Stats()[0].ThreadID
	time.Sleep(200 * time.Millisecond)

	logf("worker loop: %v without a dump", o.Duration)
	s0, nv0 := rt.Stats()[0], switches(rep.WorkerThreadID)
	rt.ResetMaxIter()
	start := time.Now()
	time.Sleep(o.Duration)
	rep.MaxIterUS = rt.ResetMaxIter()[0]
	s1, nv1 := rt.Stats()[0], switches(rep.WorkerThreadID)
	rep.Window = time.Since(start).Seconds()
	rep.Mpps = float64(s1.Counters.RX-s0.Counters.RX) / rep.Window / 1e6
	rep.NsPerIteration = rep.Window * 1e9 / float64(s1.Polls-s0.Polls)
	rep.Switched = nv1 - nv0

	logf("worker loop: shoal flows dumps %d flows", o.Flows)
	rt.ResetMaxIter()
	start = time.Now()
	fs, err := rt.Flows(2 * o.Flows)
	rep.DumpSeconds = time.Since(start).Seconds()
	rep.DumpMaxIterUS = rt.ResetMaxIter()[0]
	s2, nv2 := rt.Stats()[0], switches(rep.WorkerThreadID)
	if err != nil {
		return rep, err
	}
	rep.DumpedFlows = len(fs)
	rep.DumpMpps = float64(s2.Counters.RX-s1.Counters.RX) / time.Since(start).Seconds() / 1e6
	rep.DumpSwitched = nv2 - nv1

	rt.Stop()
	rep.EmptyPollNs, err = rt.EmptyPollNs(200_000_000)
	if err != nil {
		return rep, err
	}
	rep.EmptyPollShare = rep.EmptyPollNs / rep.NsPerIteration
	tr.close()

	// Again without traffic and under SCHED_FIFO: the scheduler can no
	// longer take the CPU from the worker (a SCHED_FIFO worker that never
	// idles would be throttled for 50 ms a second), so the longest
	// iteration is the worker's own work, as TestRuntimeDumpMillion
	// measures it.
	logf("worker loop: shoal flows dumps %d flows from a worker without traffic, under SCHED_FIFO", o.Flows)
	tq, err := startLoop(o, rep.IdleSleepMaxUS, keys, nil, 4)
	if err != nil {
		return rep, err
	}
	defer tq.close()
	tid := tq.rt.Stats()[0].ThreadID
	if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}, 0); err != nil {
		return rep, fmt.Errorf("bench: SCHED_FIFO for the worker thread: %w", err)
	}
	time.Sleep(100 * time.Millisecond)
	nv := switches(tid)
	tq.rt.ResetMaxIter()
	start = time.Now()
	if _, err := tq.rt.Flows(2 * o.Flows); err != nil {
		return rep, err
	}
	rep.QuietDumpSeconds = time.Since(start).Seconds()
	rep.QuietDumpMaxIterUS = tq.rt.ResetMaxIter()[0]
	rep.QuietDumpSwitched = switches(tid) - nv
	unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0)
	return rep, nil
}

// loopRig is a started runtime and the ports and pools it runs on.
type loopRig struct {
	rt      *dataplane.Runtime
	closers []func()
}

func (l *loopRig) close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
	l.closers = nil
}

// startLoop starts one worker preloaded with keys; its NIC replays frames
// (none: a NIC that receives nothing), its tap receives nothing. k names
// the ports and pools.
func startLoop(o DataplaneOptions, idleUS int, keys []byte, frames [][]byte, k int) (_ *loopRig, err error) {
	l := &loopRig{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	open := func(devargs string, pool *dpdk.Mempool) (*dpdk.Port, error) {
		p, err := dpdk.OpenPort(devargs)
		if err != nil {
			return nil, err
		}
		l.closers = append(l.closers, func() { p.Close() })
		if err := p.Configure(dpdk.PortConf{Mempool: pool, RxDesc: 512, TxDesc: 512}); err != nil {
			return nil, err
		}
		return p, p.Start()
	}
	tapPool, err := dpdk.NewPktMempool(fmt.Sprintf("bench_tap%d", k), 2047, 32, dpdk.DefaultDataRoom)
	if err != nil {
		return nil, err
	}
	l.closers = append(l.closers, tapPool.Free)
	tap, err := open(fmt.Sprintf("net_null%d,no-rx=1", 20+k), tapPool)
	if err != nil {
		return nil, err
	}
	var nic *dpdk.Port
	if len(frames) > 0 {
		var pool *dataplane.ReplayPool
		nic, pool, err = replayPort(k, frames)
		if err != nil {
			return nil, err
		}
		l.closers = append(l.closers, pool.Free, func() { nic.Close() })
	} else if nic, err = open(fmt.Sprintf("net_null%d,no-rx=1", 30+k), tapPool); err != nil {
		return nil, err
	}
	rt, err := dataplane.NewRuntime(dataplane.RuntimeConfig{
		Classifier: dataplane.ClassifierConfig{
			VIP: benchVIP, Seed: benchSeed, ClusterMAC: benchCluster, NodeMAC: benchNode,
			MaxFlows: uint32(o.Flows + o.Small), MaxHalfOpen: uint32(o.Small),
			HalfOpen: 10 * time.Second, Idle: 900 * time.Second, Closing: 30 * time.Second,
			Ports: []uint16{80, 443},
		},
		NIC: nic, Tap: tap, Lcores: dpdk.WorkerLcores()[:1],
		IdleSleepMax: time.Duration(idleUS) * time.Microsecond,
	})
	if err != nil {
		return nil, err
	}
	l.closers = append(l.closers, rt.Free)
	if n, err := rt.Preload(keys); err != nil || n != len(keys)/12 {
		return nil, fmt.Errorf("bench: preloaded %d flows (%v), want %d", n, err, len(keys)/12)
	}
	var own dataplane.Ownership
	for b := 0; b < 65536; b++ {
		if owned(uint16(b)) {
			own.Set(uint16(b))
		}
	}
	rt.Publish(&own)
	if err := rt.Start(); err != nil {
		return nil, err
	}
	l.closers = append(l.closers, rt.Stop)
	for deadline := time.Now().Add(5 * time.Second); rt.Stats()[0].ThreadID == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: the worker did not start")
		}
	}
	l.rt = rt
	return l, nil
}

// switches counts the involuntary context switches of thread tid: the
// times the scheduler took its CPU away while it could run.
func switches(tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// threadCPU is the CPU time of thread tid of this process in seconds
// (/proc/self/task/tid/schedstat), or -1.
func threadCPU(tid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	ns, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return -1
	}
	return float64(ns) / 1e9
}
