package dpbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/collide"
)

// DataplaneOptions sizes the data-plane benchmark.
type DataplaneOptions struct {
	Duration time.Duration // per run
	Flows    int           // established flows of RunLoop (1M by default)
	Small    int           // templates in the foreign and SYN pools (64 K)
	// Only, if set, selects the scenarios run by name (the others are
	// skipped): for profiling one of them.
	Only *regexp.Regexp
	// FloodRounds: rounds of the random and colliding SYN floods,
	// alternated, for FloodReport (0: none).
	FloodRounds int
	Log         func(format string, a ...any)
}

// Scenario is one run of the worker's own loop beside its two limits,
// measured on the same port and pool: the bare rx → free loop and the loop
// that reads every frame's headers and drops it.
type Scenario struct {
	Scenario       string  `json:"scenario"`
	Mpps           float64 `json:"mpps"`
	HeaderMpps     float64 `json:"header_loop_mpps"`
	BareMpps       float64 `json:"bare_loop_mpps"`
	RatioToHeaders float64 `json:"ratio_to_header_loop"`
	RatioToBare    float64 `json:"ratio_to_bare_loop"`
	NsPerPacket    float64 `json:"ns_per_packet"`
	Packets        uint64  `json:"packets"`
	Seconds        float64 `json:"seconds"`
	// Rate is the scenario's own figure where it has one: new
	// connections per second (millions) for the SYN-accept run.
	Rate  float64 `json:"rate_m_per_s,omitempty"`
	Check string  `json:"check"` // "ok", or which verdict counts were off

	// The same rates per second of the lcore thread's CPU time (the
	// worker's from /proc, the limits' from CLOCK_THREAD_CPUTIME_ID): on
	// a machine shared with other work, the time others took the CPU
	// from the lcore does not count. Cache sharing still does.
	CPUMpps           float64 `json:"cpu_mpps"`
	HeaderCPUMpps     float64 `json:"header_loop_cpu_mpps"`
	BareCPUMpps       float64 `json:"bare_loop_cpu_mpps"`
	CPURatioToHeaders float64 `json:"cpu_ratio_to_header_loop"`
	CPUNsPerPacket    float64 `json:"cpu_ns_per_packet"`

	// The SYN scenarios' third limit (dataplane.BenchFloor): the header
	// loop plus the connection value, the ownership test and the owned
	// SYNs out through the same tap sink, no flow table, no checksum.
	// Zero in the other scenarios. FloorToKernel is the share of frames
	// the floor sent to the tap, which the worker's to_kernel share must
	// match (Check).
	FloorMpps           float64 `json:"floor_mpps,omitempty"`
	FloorCPUMpps        float64 `json:"floor_cpu_mpps,omitempty"`
	RatioToFloor        float64 `json:"ratio_to_floor,omitempty"`
	CPURatioToFloor     float64 `json:"cpu_ratio_to_floor,omitempty"`
	FloorCPUNsPerPacket float64 `json:"floor_cpu_ns_per_packet,omitempty"`
	FloorToKernel       float64 `json:"floor_to_kernel_share,omitempty"`

	Counters dataplane.Counters `json:"counters"`
}

var (
	benchVIP     = netip.MustParseAddr("198.18.0.100")
	benchCluster = net.HardwareAddr{0x01, 0x00, 0x5e, 0x75, 0xc9, 0x3e}
	benchNode    = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	benchClient  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
)

const (
	benchSeed = 0x5eed
	frameLen  = 64
)

// owned: the benchmarked node owns one bucket in three.
func owned(b uint16) bool { return b%3 == 0 }

// tuple i → a client address in 198.19.0.0/16 and a port.
func tuple(i int) (netip.Addr, uint16) {
	return netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(1024 + (i>>16)%60000)
}

// template builds one 64-byte frame from the client to VIP:dport.
func template(src netip.Addr, sport, dport uint16, syn bool) []byte {
	eth := &layers.Ethernet{SrcMAC: benchClient, DstMAC: benchCluster, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: benchVIP.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: syn, ACK: !syn, Seq: 1, Ack: 1, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp)
	f := make([]byte, frameLen)
	copy(f, buf.Bytes())
	return f
}

func bucketOf(src netip.Addr, sport, dport uint16) uint16 {
	return dataplane.Bucket(dataplane.ConnValue(benchSeed, src, benchVIP, sport, dport))
}

// keysOf packs client-side 4-tuples to VIP:80 as the preloader takes them.
func appendKey(keys []byte, src netip.Addr, sport uint16) []byte {
	a, v := src.As4(), benchVIP.As4()
	keys = append(keys, a[:]...)
	keys = append(keys, v[:]...)
	keys = binary.BigEndian.AppendUint16(keys, sport)
	return binary.BigEndian.AppendUint16(keys, 80)
}

// tuples walks client tuples from `from`, keeping n whose bucket passes
// keep; it returns their keys and the next index.
func tuples(n, from int, keep func(uint16) bool) (srcs []netip.Addr, ports []uint16, keys []byte, next int) {
	i := from
	for len(srcs) < n {
		src, sport := tuple(i)
		i++
		if !keep(bucketOf(src, sport, 80)) {
			continue
		}
		srcs, ports = append(srcs, src), append(ports, sport)
		keys = appendKey(keys, src, sport)
	}
	return srcs, ports, keys, i
}

// frames makes ACK (or SYN) templates for up to max of the tuples, a
// random sample when there are more.
func frames(srcs []netip.Addr, ports []uint16, max int, syn bool, rng *rand.Rand) [][]byte {
	idx := rng.Perm(len(srcs))
	if len(idx) > max {
		idx = idx[:max]
	}
	out := make([][]byte, len(idx))
	for k, i := range idx {
		out[k] = template(srcs[i], ports[i], 80, syn)
	}
	return out
}

func classifierConfig(maxFlows, maxHalfOpen int, halfOpen time.Duration) dataplane.ClassifierConfig {
	return dataplane.ClassifierConfig{
		VIP: benchVIP, Seed: benchSeed, ClusterMAC: benchCluster, NodeMAC: benchNode,
		MaxFlows: uint32(maxFlows), MaxHalfOpen: uint32(maxHalfOpen),
		HalfOpen: halfOpen, Idle: 900 * time.Second, Closing: 30 * time.Second,
		Ports: []uint16{80, 443},
	}
}

func ownership(keep func(uint16) bool) *dataplane.Ownership {
	var own dataplane.Ownership
	for b := 0; b < 65536; b++ {
		if keep(uint16(b)) {
			own.Set(uint16(b))
		}
	}
	return &own
}

// bench holds what every run shares: the lcore and the tap sink.
type bench struct {
	o     DataplaneOptions
	lcore uint
	tap   *dpdk.Port
	pool  *dpdk.Mempool
	logf  func(string, ...any)
	n     int
}

// node is the worker a scenario runs: its classifier, the buckets it owns
// and the established flows preloaded into its table.
type node struct {
	cfg  dataplane.ClassifierConfig
	own  *dataplane.Ownership
	keys []byte
	// floor: measure the SYN floor beside the worker (SYN scenarios).
	floor bool
}

// run measures the two limits on one pool of frames, then the worker's own
// loop (dataplane.Runtime: worker.c on the lcore) over the same port with
// n's table, and checks the counters with check (nil: no check).
func (b *bench) run(name string, fs [][]byte, n node, check func(dataplane.Counters) string) (Scenario, error) {
	if b.o.Only != nil && !b.o.Only.MatchString(name) {
		return Scenario{}, errSkipped
	}
	b.n++
	port, pool, err := replayPort(40+b.n, fs) // 40 on: clear of RunLoop's ports
	if err != nil {
		return Scenario{}, err
	}
	defer pool.Free()
	defer port.Close()
	loops := "bare loop, header loop"
	if n.floor {
		loops += ", SYN floor"
	}
	b.logf("%s: %d templates; %s, worker, %v each", name, len(fs), loops, b.o.Duration)
	bare, err := dataplane.BenchLimit(b.lcore, port, dataplane.BareLoop, b.o.Duration)
	if err != nil {
		return Scenario{}, err
	}
	hdr, err := dataplane.BenchLimit(b.lcore, port, dataplane.HeaderLoop, b.o.Duration)
	if err != nil {
		return Scenario{}, err
	}
	var floor dataplane.BenchResult
	if n.floor {
		if floor, err = dataplane.BenchFloor(b.lcore, port, b.tap, n.cfg.Seed, n.own, b.o.Duration); err != nil {
			return Scenario{}, err
		}
	}
	s, err := b.runWorker(name, port, n, check)
	if err != nil {
		return s, err
	}
	if n.floor && floor.Packets > 0 {
		s.FloorMpps, s.FloorCPUMpps = floor.Mpps(), floor.CPUMpps()
		s.RatioToFloor, s.FloorCPUNsPerPacket = s.Mpps/floor.Mpps(), 1e3/floor.CPUMpps()
		if s.CPUMpps > 0 {
			s.CPURatioToFloor = s.CPUMpps / floor.CPUMpps()
		}
		s.FloorToKernel = float64(floor.Delivered) / float64(floor.Packets)
		if msg := share("floor to tap", floor.Delivered, floor.Packets, float64(s.Counters.ToKernel)/float64(s.Counters.RX)); msg != "" {
			s.Check = strings.TrimPrefix(s.Check+msg, "ok")
		}
	}
	s.HeaderMpps, s.BareMpps = hdr.Mpps(), bare.Mpps()
	s.RatioToHeaders, s.RatioToBare = s.Mpps/hdr.Mpps(), s.Mpps/bare.Mpps()
	s.HeaderCPUMpps, s.BareCPUMpps = hdr.CPUMpps(), bare.CPUMpps()
	if s.CPUMpps > 0 {
		s.CPURatioToHeaders = s.CPUMpps / s.HeaderCPUMpps
	}
	return s, nil
}

// worker measures the worker's own loop alone over a fresh replay port of
// fs: the flood rounds, which compare two worker runs with each other.
func (b *bench) worker(name string, fs [][]byte, n node, check func(dataplane.Counters) string) (Scenario, error) {
	b.n++
	port, pool, err := replayPort(40+b.n, fs)
	if err != nil {
		return Scenario{}, err
	}
	defer pool.Free()
	defer port.Close()
	b.logf("%s: %d templates; worker, %v", name, len(fs), b.o.Duration)
	return b.runWorker(name, port, n, check)
}

// runWorker runs dataplane.Runtime (worker.c on the lcore) over port with
// n's table and checks the counters with check (nil: no check).
func (b *bench) runWorker(name string, port *dpdk.Port, n node, check func(dataplane.Counters) string) (Scenario, error) {
	rt, err := dataplane.NewRuntime(dataplane.RuntimeConfig{Classifier: n.cfg, NIC: port, Tap: b.tap,
		Lcores: []uint{b.lcore}, IdleSleepMax: 500 * time.Microsecond})
	if err != nil {
		return Scenario{}, err
	}
	defer rt.Free()
	if got, err := rt.Preload(n.keys); err != nil || got != len(n.keys)/12 {
		return Scenario{}, fmt.Errorf("bench: %s: preloaded %d flows (%v), want %d", name, got, err, len(n.keys)/12)
	}
	rt.Publish(n.own)
	start := time.Now()
	if err := rt.Start(); err != nil {
		return Scenario{}, err
	}
	// The worker's CPU time, from its first loop iteration on, beside the
	// frames it took meanwhile.
	tid := 0
	for deadline := time.Now().Add(time.Second); tid == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
		tid = rt.Stats()[0].ThreadID
	}
	rx0, cpu0 := rt.Stats()[0].Counters.RX, threadCPU(tid)
	time.Sleep(b.o.Duration)
	rx1, cpu1 := rt.Stats()[0].Counters.RX, threadCPU(tid)
	rt.Stop()
	secs := time.Since(start).Seconds()
	ctr := rt.Stats()[0].Counters
	mpps := float64(ctr.RX) / secs / 1e6
	s := Scenario{
		Scenario: name, Mpps: mpps,
		NsPerPacket: 1e3 / mpps, Packets: ctr.RX, Seconds: secs,
		Check: "ok", Counters: ctr,
	}
	if cpu0 >= 0 && cpu1 > cpu0 {
		s.CPUMpps = float64(rx1-rx0) / (cpu1 - cpu0) / 1e6
		s.CPUNsPerPacket = 1e3 / s.CPUMpps
	}
	if check != nil {
		if msg := check(ctr); msg != "" {
			s.Check = msg
		}
	}
	return s, nil
}

// errSkipped: a scenario Only did not select.
var errSkipped = errors.New("bench: scenario not selected")

// share checks that got is within 2% of want×rx.
func share(what string, got, rx uint64, want float64) string {
	f := float64(got) / float64(rx)
	if f < want-0.02 || f > want+0.02 {
		return fmt.Sprintf("%s %.3f of frames, want %.2f; ", what, f, want)
	}
	return ""
}

// Report is what RunDataplane measured.
type Report struct {
	Scenarios []Scenario
	Flood     *FloodReport // nil when the rounds did not run
}

// floodRoundsName names the flood rounds for DataplaneOptions.Only.
const floodRoundsName = "random and colliding SYN floods, alternated"

// RunDataplane runs every scenario with the worker's own loop, then the
// flood rounds (FloodReport). The EAL must
// be initialised with at least one worker lcore; the loops run on the
// first.
func RunDataplane(o DataplaneOptions) (Report, error) {
	var rep Report
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Small <= 0 {
		o.Small = 1 << 16
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	workers := dpdk.WorkerLcores()
	if len(workers) == 0 {
		return rep, fmt.Errorf("bench: the EAL has no worker lcore")
	}
	b := &bench{o: o, lcore: workers[0], logf: logf}
	// The tap is a sink: net_null with no RX, so the worker's tap poll
	// returns nothing and what it sends the kernel is freed.
	var err error
	if b.pool, err = dpdk.NewPktMempool("bench_tap", 1023, 0, 256); err != nil {
		return rep, err
	}
	defer b.pool.Free()
	if b.tap, err = dpdk.OpenPort("net_null9,no-rx=1"); err != nil {
		return rep, err
	}
	defer b.tap.Close()
	if err := b.tap.Configure(dpdk.PortConf{Mempool: b.pool, RxDesc: 512, TxDesc: 512}); err != nil {
		return rep, err
	}
	if err := b.tap.Start(); err != nil {
		return rep, err
	}
	rng := rand.New(rand.NewSource(1))
	var out []Scenario
	add := func(s Scenario, err error) error {
		if err == nil {
			out = append(out, s)
		}
		if errors.Is(err, errSkipped) {
			return nil
		}
		return err
	}

	// A node owning one bucket in three, with 1M established flows.
	logf("building 1M established flows in one bucket in three")
	estSrc, estPort, estKeys, next := tuples(1<<20, 0, owned)
	main := node{cfg: classifierConfig(1<<20+2*o.Small, o.Small, 10*time.Second), own: ownership(owned), keys: estKeys}
	fSrc, fPort, _, next := tuples(o.Small, next, func(b uint16) bool { return !owned(b) })
	foreign := frames(fSrc, fPort, o.Small, false, rng)
	if err := add(b.run("foreign drop", foreign, main, func(c dataplane.Counters) string {
		return share("fast_dropped", c.FastDropped, c.RX, 1)
	})); err != nil {
		return rep, err
	}
	// After a rebalance: 5% of the foreign buckets hold a flow of ours.
	extra := append([]byte(nil), estKeys...)
	for bk := 0; bk < 65536; bk++ {
		if !owned(uint16(bk)) && rng.Intn(20) == 0 {
			for i := next; i-next < 1<<22; i++ {
				src, sport := tuple(i)
				if int(bucketOf(src, sport, 80)) == bk {
					extra = appendKey(extra, src, sport)
					break
				}
			}
		}
	}
	rebalanced := main
	rebalanced.keys = extra
	if err := add(b.run("foreign drop, 5% of foreign buckets hold our flows", foreign, rebalanced, func(c dataplane.Counters) string {
		return share("foreign_dropped", c.ForeignDropped, c.RX, 1) + share("probed", c.ForeignDropped-c.FastDropped, c.RX, 0.05)
	})); err != nil {
		return rep, err
	}
	synSrc := make([][]byte, o.Small)
	for i := range synSrc {
		src, sport := tuple(next + 1<<24 + i)
		synSrc[i] = template(src, sport, 80, true)
	}
	synMain := main
	synMain.floor = true
	if err := add(b.run("SYN classification (one bucket in three ours)", synSrc, synMain, func(c dataplane.Counters) string {
		return share("syn_not_ours", c.SynNotOurs, c.RX, 2.0/3)
	})); err != nil {
		return rep, err
	}

	// New connections: every SYN ours and new, flows expiring as fast
	// as they come (a 1 ms half-open timer, 256 K distinct tuples).
	{
		syns := make([][]byte, 1<<18)
		for i := range syns {
			src, sport := tuple(1<<25 + i)
			syns[i] = template(src, sport, 80, true)
		}
		all := node{cfg: classifierConfig(1<<20, 1<<20, time.Millisecond), own: ownership(func(uint16) bool { return true }), floor: true}
		s, err := b.run("new connections (SYN accepted, flows expiring)", syns, all, func(c dataplane.Counters) string {
			return share("syn_accepted", c.SynAccepted, c.RX, 1)
		})
		s.Rate = float64(s.Counters.SynAccepted) / s.Seconds / 1e6
		if err := add(s, err); err != nil {
			return rep, err
		}
	}

	// Established lookups at 10 K, 1 M and 4 M flows: ACKs of up to
	// 512 K of them, in random order.
	for _, n := range []int{10_000, 1 << 20, 4 << 20} {
		logf("established: %d flows", n)
		est := main
		src, port := estSrc, estPort
		if n != 1<<20 {
			src, port, est.keys, _ = tuples(n, 0, owned)
			est.cfg = classifierConfig(n, 1024, 10*time.Second)
		}
		if err := add(b.run(fmt.Sprintf("established lookups, %s flows", count(n)), frames(src, port, 1<<19, false, rng), est,
			func(c dataplane.Counters) string { return share("to_kernel", c.ToKernel, c.RX, 1) })); err != nil {
			return rep, err
		}
	}

	// A SYN flood beside legitimate traffic: 64 K flood SYNs in our
	// buckets, random or all with one connection value, interleaved
	// with 64 K ACKs of established flows.
	legit := frames(estSrc, estPort, 1<<16-1024, false, rng)
	base := collide.Tuple{Src: netip.MustParseAddr("198.19.0.1"), Dst: benchVIP, SrcPort: 40000, DstPort: 80}
	for !owned(bucketOf(base.Src, base.SrcPort, 80)) {
		base.SrcPort++
	}
	coll, err := collide.Tuples(base, collide.Free(32, 16, 0), len(legit), func(t collide.Tuple) bool { return t.SrcPort != 0 })
	if err != nil {
		return rep, err
	}
	flooded := node{cfg: classifierConfig(1<<20+1<<17, 1<<17, 10*time.Second), own: ownership(owned), keys: estKeys}
	mixes := map[string][][]byte{}
	for _, kind := range []string{"random", "colliding"} {
		mix := make([][]byte, 0, 2*len(legit))
		for i, l := range legit {
			var src netip.Addr
			var sport uint16
			if kind == "colliding" {
				src, sport = coll[i].Src, coll[i].SrcPort
			} else {
				for j := 1<<26 + i*4; ; j++ {
					if src, sport = tuple(j); owned(bucketOf(src, sport, 80)) {
						break
					}
				}
			}
			mix = append(mix, l, template(src, sport, 80, true))
		}
		mixes[kind] = mix
		if err := add(b.run(fmt.Sprintf("%s SYN flood beside established traffic", kind), mix, flooded, func(c dataplane.Counters) string {
			return share("to_kernel", c.ToKernel, c.RX, 1)
		})); err != nil {
			return rep, err
		}
	}
	rep.Scenarios = out
	if o.FloodRounds > 0 && (o.Only == nil || o.Only.MatchString(floodRoundsName)) {
		logf("%s: %d rounds of each, alternated", floodRoundsName, o.FloodRounds)
		f, err := b.floodRounds(o.FloodRounds, mixes, flooded)
		if err != nil {
			return rep, err
		}
		rep.Flood = &f
	}
	return rep, nil
}

func count(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1000:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// replayPort makes a net_null port whose pool holds exactly the frames.
// The pool frees as the node's does, through a per-lcore cache of
// dataplane.MbufCache mbufs (dataplane.ReplayPool), while the port still takes
// every template in turn.
func replayPort(k int, frames [][]byte) (*dpdk.Port, *dataplane.ReplayPool, error) {
	pool, err := dataplane.NewReplayPool(fmt.Sprintf("bench%d", k), frames, frameLen, 128+frameLen, dataplane.MbufCache)
	if err != nil {
		return nil, nil, err
	}
	port, err := dpdk.OpenPort(fmt.Sprintf("net_null%d,size=%d", 10+k, frameLen))
	if err != nil {
		pool.Free()
		return nil, nil, err
	}
	if err := port.Configure(dpdk.PortConf{Mempool: pool.Pool, RxDesc: 512, TxDesc: 512}); err == nil {
		err = port.Start()
	}
	if err != nil {
		port.Close()
		pool.Free()
		return nil, nil, err
	}
	return port, pool, nil
}
