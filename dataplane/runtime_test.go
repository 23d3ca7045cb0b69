package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"golang.org/x/sys/unix"

	dpdk "github.com/shoal-lb/shoal/cgo"
)

// The runtime tests run the real worker loop (worker.c) on DPDK virtual
// devices: net_null replaying frame templates as the NIC, net_null without
// receive as the tap. The EAL is initialised once, as root, in TestMain.

var (
	ealSkip string
	ealErr  error
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		ealSkip = "needs root: DPDK's EAL must be initialised as root"
		os.Exit(m.Run())
	}
	cfg := dpdk.EALConfig{
		Lcores:     "0@(0-1),1@(0-1)",
		MemoryMB:   256,
		InMemory:   true,
		FilePrefix: fmt.Sprintf("shoal-dataplane-test-%d", os.Getpid()),
		NoPCI:      true,
		LogLevel:   "error",
		Extra:      []string{"--no-telemetry"},
	}
	if free, err := dpdk.HugepagesFree(); err == nil && free >= 128 {
		cfg.Hugepages = true
	} else {
		fmt.Fprintf(os.Stderr, "dataplane test: %d free hugepages, running the EAL with --no-huge\n", free)
	}
	ealErr = dpdk.InitEAL(cfg)
	code := m.Run()
	if ealErr == nil {
		if err := dpdk.CleanupEAL(); err != nil {
			fmt.Fprintln(os.Stderr, "CleanupEAL:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func needEAL(t *testing.T) {
	t.Helper()
	if ealSkip != "" {
		t.Skip(ealSkip)
	}
	if ealErr != nil {
		t.Fatalf("InitEAL: %v", ealErr)
	}
	if len(dpdk.WorkerLcores()) == 0 {
		t.Fatal("the EAL has no worker lcore")
	}
}

var portSeq = 30

// openPort opens a started net_null port: replaying frames (64 bytes each,
// the pool holding exactly them) or, with none, receiving nothing.
func openPort(t *testing.T, frames [][]byte) *dpdk.Port {
	t.Helper()
	portSeq++
	var pool *dpdk.Mempool
	var err error
	devargs := fmt.Sprintf("net_null%d,size=64", portSeq)
	if len(frames) > 0 {
		// No per-lcore cache: the pool hands mbufs out first in, first
		// out, and the port cycles through every template.
		pool, err = dpdk.NewPktMempool(fmt.Sprintf("rt_pool%d", portSeq), uint32(len(frames)), 0, 128+64)
		if err == nil {
			err = FillPool(pool, frames, 64)
		}
	} else {
		devargs += ",no-rx=1"
		pool, err = dpdk.NewPktMempool(fmt.Sprintf("rt_pool%d", portSeq), 2047, 32, dpdk.DefaultDataRoom)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Free)
	p, err := dpdk.OpenPort(devargs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Configure(dpdk.PortConf{Mempool: pool, RxDesc: 512, TxDesc: 512}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// rtTuple i: a client in 198.19.0.0/16 towards the fixtures' VIP, port 80.
func rtTuple(i int) Tuple {
	return Tuple{
		Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(1024+i>>16)),
		VIP:    netip.AddrPortFrom(fxVIP, 80),
	}
}

// rtKeys packs tuples 0..n-1 for Runtime.Preload.
func rtKeys(n int) []byte {
	keys := make([]byte, 0, 12*n)
	for i := 0; i < n; i++ {
		tp := rtTuple(i)
		a, v := tp.Client.Addr().As4(), tp.VIP.Addr().As4()
		keys = append(keys, a[:]...)
		keys = append(keys, v[:]...)
		keys = binary.BigEndian.AppendUint16(keys, tp.Client.Port())
		keys = binary.BigEndian.AppendUint16(keys, tp.VIP.Port())
	}
	return keys
}

// rtACK is a 64-byte ACK of tuple i from the client.
func rtACK(i int) []byte {
	tp := rtTuple(i)
	eth := &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: tp.Client.Addr().AsSlice(), DstIP: tp.VIP.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(tp.Client.Port()), DstPort: 80, ACK: true, Seq: 1, Ack: 1, Window: 1000}
	return rtFrame(eth, ip, tcp)
}

// rtFrame serializes a header-only TCP segment with its checksums into a
// 64-byte frame (padded as on the wire).
func rtFrame(eth *layers.Ethernet, ip *layers.IPv4, tcp *layers.TCP) []byte {
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp)
	f := make([]byte, 64)
	copy(f, buf.Bytes())
	return f
}

// startRuntime starts one worker with maxFlows of room, preloaded with
// flows established tuples, its NIC replaying ACKs of the first traffic of
// them (none: an idle NIC).
func startRuntime(t *testing.T, maxFlows, flows, traffic int) *Runtime {
	t.Helper()
	return startRuntimeSleep(t, maxFlows, flows, traffic, 100*time.Microsecond)
}

// startRuntimeSleep is startRuntime with the worker's idle sleep cap.
func startRuntimeSleep(t *testing.T, maxFlows, flows, traffic int, idleSleepMax time.Duration) *Runtime {
	t.Helper()
	needEAL(t)
	var frames [][]byte
	for i := 0; i < traffic; i++ {
		frames = append(frames, rtACK(i))
	}
	nic, tap := openPort(t, frames), openPort(t, nil)
	cfg := fxConfig()
	cfg.MaxFlows, cfg.MaxHalfOpen = uint32(maxFlows), uint32(maxFlows/4)
	r, err := NewRuntime(RuntimeConfig{Classifier: cfg, NIC: nic, Tap: tap,
		Lcores: dpdk.WorkerLcores()[:1], IdleSleepMax: idleSleepMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Free)
	if flows > 0 {
		if n, err := r.Preload(rtKeys(flows)); err != nil || n != flows {
			t.Fatalf("Preload: %d flows, %v; want %d", n, err, flows)
		}
	}
	r.Publish(fxOwnership())
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	for deadline := time.Now().Add(5 * time.Second); r.Stats()[0].ThreadID == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not start within 5 s")
		}
	}
	return r
}

func flowStates(t *testing.T, r *Runtime) map[string]string {
	t.Helper()
	fs, err := r.Flows(1 << 20)
	if err != nil {
		t.Fatalf("Flows: %v", err)
	}
	m := map[string]string{}
	for _, f := range fs {
		m[f.Client] = f.State
	}
	return m
}

// TestCommandWakesIdleWorker: a command posted to a worker deep in its
// idle sleep (50 ms here, no traffic) runs at once, not when the sleep
// ends: the waiter signals the worker thread (commands.go, wakeWorker).
// Without the wake each command would wait 25 ms on average.
func TestCommandWakesIdleWorker(t *testing.T) {
	const sleepMax = 50 * time.Millisecond
	r := startRuntimeSleep(t, 4096, 0, 0, sleepMax)
	ctx := context.Background()
	var took []time.Duration
	for i := 0; i < 20; i++ {
		time.Sleep(3 * sleepMax) // the worker is idle and sleeping sleepMax at a time
		a := rtTuple(i + 1)
		t0 := time.Now()
		if err := r.Install(ctx, FlowSpec{Tuple: a, State: Established}); err != nil {
			t.Fatalf("Install: %v", err)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	t.Logf("20 Installs on an idle worker (idle sleep cap %v): min %v, median %v, max %v; worker idle sleeps %d",
		sleepMax, took[0], took[10], took[19], r.Stats()[0].IdleSleeps)
	if took[10] > 5*time.Millisecond {
		t.Errorf("median Install %v on a sleeping worker; want well under its %v sleep (the wake failed)", took[10], sleepMax)
	}
}

// TestRuntimeCommands drives install, remove, withdraw and dump through a
// running worker's ring, with waiters that give up and waiters in
// parallel.
func TestRuntimeCommands(t *testing.T) {
	r := startRuntime(t, 4096, 0, 0)
	ctx := context.Background()
	a, b := rtTuple(1), rtTuple(2)

	if err := r.Install(ctx, FlowSpec{Tuple: a, State: Established}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	if err := r.Install(ctx, FlowSpec{Tuple: b, State: SynRcvd, ISN: 7, ISNKnown: true}); err != nil {
		t.Fatalf("Install syn_rcvd: %v", err)
	}
	m := flowStates(t, r)
	if len(m) != 2 || m[a.Client.String()] != "established" || m[b.Client.String()] != "syn_rcvd" {
		t.Fatalf("flows after two installs: %v", m)
	}
	if err := r.Withdraw(ctx, a); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	if err := r.Remove(ctx, b); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := r.Remove(ctx, b); !errors.Is(err, ErrNoFlow) {
		t.Fatalf("second Remove: %v, want ErrNoFlow", err)
	}
	if m := flowStates(t, r); len(m) != 1 || m[a.Client.String()] != "withdrawn" {
		t.Fatalf("flows after withdraw and remove: %v", m)
	}
	st := r.Stats()[0]
	if st.Flows.Withdrawn != 1 || st.Flows.Established+st.Flows.SynRcvd != 0 {
		t.Errorf("flow counts %+v", st.Flows)
	}

	// Refused before reaching the worker, each naming its problem.
	bad := a
	bad.VIP = netip.MustParseAddrPort("198.18.0.99:80")
	for _, err := range []error{
		r.Install(ctx, FlowSpec{Tuple: bad, State: Established}),
		r.Install(ctx, FlowSpec{Tuple: a, State: Closing}),
		r.Withdraw(ctx, Tuple{Client: netip.MustParseAddrPort("[2001:db8::1]:5"), VIP: a.VIP}),
	} {
		if err == nil {
			t.Errorf("a malformed command was accepted")
		} else {
			t.Logf("refused: %v", err)
		}
	}

	// Waiters in parallel; then waiters that give up at once. Every
	// command either completes or reports its deadline, and the ring
	// keeps working: abandoned slots come back.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				if err := r.Install(ctx, FlowSpec{Tuple: rtTuple(100 + g*50 + k), State: Established}); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("parallel Install: %v", err)
	}
	if m := flowStates(t, r); len(m) != 401 {
		t.Errorf("%d flows after 400 parallel installs, want 401", len(m))
	}
	late, busy := 0, 0
	for k := 0; k < 200; k++ {
		// A deadline that has passed: the waiter gives up at its first
		// look unless the worker was faster. (A 1 µs timeout was not
		// enough: the context expires only when its timer runs, and a
		// waiter that polls without parking completes first.)
		c, cancel := context.WithDeadline(ctx, time.Now())
		err := r.Withdraw(c, rtTuple(1000+k))
		cancel()
		switch {
		case errors.Is(err, ErrBusy):
			// Never posted: the ring was full of abandoned commands (the
			// worker was asleep or off its CPU). ErrBusy wraps the
			// context's error, so it is checked first.
			busy++
			time.Sleep(time.Millisecond)
		case errors.Is(err, context.DeadlineExceeded):
			late++
		case err != nil:
			t.Fatalf("Withdraw with a passed deadline: %v", err)
		}
	}
	t.Logf("%d of 200 waiters with a passed deadline gave up, %d found the ring full", late, busy)
	if late == 0 {
		t.Errorf("no waiter gave up: the abandon path was not exercised")
	}
	for k := 0; k < 3*CommandSlots; k++ {
		if err := r.Remove(ctx, rtTuple(100+k)); err != nil {
			t.Fatalf("Remove %d after the abandoned commands: %v", k, err)
		}
	}
	// Every posted command completes, abandoned or not: 5 above, 400
	// parallel, the withdrawals that found a slot, 3*CommandSlots removes
	// and the dumps.
	if st := r.Stats()[0]; st.Commands < uint64(405+200-busy+3*CommandSlots) || st.ThreadID <= 0 || st.MaxIterUS <= 0 {
		t.Errorf("worker stats %+v", st)
	}

	r.Stop()
	if err := r.Install(ctx, FlowSpec{Tuple: a, State: Established}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Install on a stopped worker: %v, want ErrNotRunning", err)
	}
	if fs, err := r.Flows(10); err != nil || len(fs) != 0 {
		t.Errorf("Flows of a stopped worker: %d flows, %v", len(fs), err)
	}
}

// nonvoluntarySwitches is how often the scheduler took the CPU away from
// thread tid while it could run.
func nonvoluntarySwitches(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no nonvoluntary_ctxt_switches for thread %d", tid)
	return 0
}

// maxIterBoundUS is the bound docs/dataplane.md claims for the longest
// loop iteration while a million flows are dumped.
const maxIterBoundUS = 500

// TestRuntimeDumpMillion dumps a million flows (what shoal flows asks)
// from a running worker and checks that its longest loop iteration during
// the dump stays under maxIterBoundUS.
//
// On this shared two-CPU machine the scheduler takes the CPU from the
// worker hundreds of times a second, for milliseconds, which says nothing
// about the worker's own work. So the worker thread runs SCHED_FIFO for
// the test (restored afterwards), and its NIC carries no traffic: a worker
// under SCHED_FIFO that never idles is throttled by the kernel for 50 ms
// every second. The packets' share of an iteration is bounded by its two
// bursts of 32; shoal bench dataplane reports the longest iteration under
// traffic. Interrupts, softirqs of other tests' traffic and the
// hypervisor still stretch an iteration now and then (by milliseconds,
// seen here under load); a fault of the design (an unbounded scan: 13 ms)
// stretches one in every dump. So the test makes up to five attempts and
// fails only if every one exceeds the bound.
func TestRuntimeDumpMillion(t *testing.T) {
	const flows = 1 << 20
	r := startRuntime(t, flows, flows, 0)
	tid := r.Stats()[0].ThreadID
	fifo := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}
	if err := unix.SchedSetAttr(tid, &fifo, 0); err != nil {
		t.Logf("SCHED_FIFO for the worker thread refused (%v): measuring under the normal scheduler", err)
	} else {
		t.Cleanup(func() {
			other := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
			if err := unix.SchedSetAttr(tid, &other, 0); err != nil {
				t.Errorf("restoring SCHED_NORMAL for the worker thread: %v", err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	r.ResetMaxIter()
	time.Sleep(200 * time.Millisecond)
	t.Logf("without a dump: longest iteration %.1f µs over 200 ms", r.ResetMaxIter()[0])

	for attempt := 1; ; attempt++ {
		nv, cpu := nonvoluntarySwitches(t, tid), interference(t)
		r.ResetMaxIter()
		start := time.Now()
		fs, err := r.Flows(2 * flows)
		took := time.Since(start)
		worst := r.ResetMaxIter()[0]
		switched, other := nonvoluntarySwitches(t, tid)-nv, interference(t)-cpu
		if err != nil {
			t.Fatalf("Flows: %v", err)
		}
		if len(fs) != flows {
			t.Fatalf("dumped %d flows, want %d", len(fs), flows)
		}
		for _, f := range fs[:1000] {
			if f.State != "established" || f.VIP != "198.18.0.100:80" {
				t.Fatalf("dumped flow %+v", f)
			}
		}
		t.Logf("attempt %d: %d flows in %v; longest iteration %.1f µs (bound %d µs); worker switched out %d times; machine irq+softirq+steal %v",
			attempt, len(fs), took.Round(time.Millisecond), worst, maxIterBoundUS, switched, other)
		if worst < maxIterBoundUS {
			return
		}
		if attempt == 5 {
			t.Fatalf("longest iteration during the dump over the %d µs bound in 5 attempts out of 5", maxIterBoundUS)
		}
	}
}

// interference is the time every CPU spent in interrupts, softirqs and
// stolen by the hypervisor, from /proc/stat.
func interference(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	// cpu user nice system idle iowait irq softirq steal ...
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var ticks int
	for _, k := range []int{6, 7, 8} {
		if k < len(f) {
			n, _ := strconv.Atoi(f[k])
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ = 100
}

// TestWorkerDecidesTapAfterNIC: a loser of an overlap that was stalled
// finds, when it runs again, its kernel's SYN-ACK on the tap and the
// client's ACK for the winner far back in its NIC queue. The worker must
// decide the ACK first (the flow is withdrawn) and turn the SYN-ACK into a
// RST for its kernel; none may leave through the NIC. The NIC replays 1000
// foreign ACKs and then the client's ACK, the tap replays the SYN-ACK; the
// old loop (one NIC burst, then the tap) sent 31 bursts of SYN-ACKs out
// before it reached the ACK.
func TestWorkerDecidesTapAfterNIC(t *testing.T) {
	needEAL(t)
	const fillers, copies = 1000, 16384
	tp := rtTuple(5000)
	const clientISN, ourISN, winnerISN = 1000, 5000, 9000
	ack := rtACK(5000)
	binary.BigEndian.PutUint32(ack[14+20+4:], clientISN+1)
	binary.BigEndian.PutUint32(ack[14+20+8:], winnerISN+1)
	ack = fixTCPChecksum(ack)
	var nicFrames [][]byte
	for i := 0; i < fillers; i++ {
		nicFrames = append(nicFrames, rtACK(i))
	}
	nicFrames = append(nicFrames, ack)
	synack := rtSynAck(tp, ourISN, clientISN+1)
	tapFrames := make([][]byte, copies)
	for i := range tapFrames {
		tapFrames[i] = synack
	}
	nic, tap := openPort(t, nicFrames), openPort(t, tapFrames)
	r, err := NewRuntime(RuntimeConfig{Classifier: fxConfig(), NIC: nic, Tap: tap,
		Lcores: dpdk.WorkerLcores()[:1], IdleSleepMax: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Free)
	if err := r.PreloadHalfOpen(tp, clientISN+1); err != nil {
		t.Fatal(err)
	}
	r.Publish(fxOwnership())
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	var c Counters
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		c = r.Stats()[0].Counters
		if c.OverlapWithdrawn > 0 && c.KernelWithdrawnDropped > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no withdrawal within 5 s: %+v", c)
		}
	}
	// A converted SYN-ACK goes back to the tap's pool as the client's RST
	// and comes round again after all copies, to leave by the NIC then:
	// those, and a burst of lag between the counters, are all TX may hold.
	recycled := uint64(0)
	if c.FromKernel > copies {
		recycled = c.FromKernel - copies
	}
	if c.OverlapWithdrawn != 1 || c.TX > recycled+32 {
		t.Fatalf("withdrawn %d, kernel SYN-ACKs turned into RSTs %d, frames out through the NIC %d (from the kernel %d): the SYN-ACK left before the client's ACK was decided",
			c.OverlapWithdrawn, c.KernelWithdrawnDropped, c.TX, c.FromKernel)
	}
	t.Logf("withdrawn %d, SYN-ACKs turned into RSTs %d, out through the NIC %d, from the kernel %d",
		c.OverlapWithdrawn, c.KernelWithdrawnDropped, c.TX, c.FromKernel)
}

// rtSynAck is a 64-byte SYN-ACK of tuple tp from our kernel.
func rtSynAck(tp Tuple, isn, ack uint32) []byte {
	eth := &layers.Ethernet{SrcMAC: fxNodeMAC, DstMAC: fxClientMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: tp.VIP.Addr().AsSlice(), DstIP: tp.Client.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: 80, DstPort: layers.TCPPort(tp.Client.Port()), SYN: true, ACK: true, Seq: isn, Ack: ack, Window: 1000}
	return rtFrame(eth, ip, tcp)
}

// fixTCPChecksum recomputes the TCP checksum of a 64-byte IPv4/TCP frame
// without options or payload.
func fixTCPChecksum(f []byte) []byte {
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet), ip, tcp)
	g := make([]byte, 64)
	copy(g, buf.Bytes())
	return g
}
