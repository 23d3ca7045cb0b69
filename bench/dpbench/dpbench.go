package dpbench

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane"
)

// DataplaneOptions sizes the data-plane benchmark.
type DataplaneOptions struct {
	Duration time.Duration // per run
	Flows    int           // established flows preloaded (1M by default)
	Small    int           // templates in the foreign and SYN pools
	Log      func(format string, a ...any)
}

// Scenario is one measured loop beside its limit.
type Scenario struct {
	Scenario     string  `json:"scenario"`
	Mpps         float64 `json:"mpps"`
	RatioToLimit float64 `json:"ratio_to_limit"`
	LimitMpps    float64 `json:"limit_mpps"`
	NsPerPacket  float64 `json:"ns_per_packet"`
	ExtraNs      float64 `json:"classify_ns_per_packet"` // cost over the bare loop
	Packets      uint64  `json:"packets"`
	Seconds      float64 `json:"seconds"`
	Dropped      uint64  `json:"dropped"`
	Delivered    uint64  `json:"delivered"`
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

// template builds one 64-byte frame from the client to the VIP.
func template(src netip.Addr, sport uint16, syn bool) []byte {
	eth := &layers.Ethernet{SrcMAC: benchClient, DstMAC: benchCluster, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: benchVIP.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, SYN: syn, ACK: !syn, Seq: 1, Ack: 1, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp)
	f := make([]byte, frameLen)
	copy(f, buf.Bytes())
	return f
}

// tuples walks client tuples, keeping those whose bucket passes keep.
func tuples(n int, from int, keep func(uint16) bool) (frames [][]byte, keys []byte, next int) {
	i := from
	for len(frames) < n {
		src, sport := tuple(i)
		i++
		if !keep(dataplane.Bucket(dataplane.ConnValue(benchSeed, src, benchVIP, sport, 80))) {
			continue
		}
		frames = append(frames, template(src, sport, false))
		a, v := src.As4(), benchVIP.As4()
		keys = append(keys, a[:]...)
		keys = append(keys, v[:]...)
		keys = binary.BigEndian.AppendUint16(keys, sport)
		keys = binary.BigEndian.AppendUint16(keys, 80)
	}
	return frames, keys, i
}

// RunDataplane runs every scenario. The EAL must be initialised with at
// least one worker lcore; the loops run on the first.
func RunDataplane(o DataplaneOptions) ([]Scenario, error) {
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
	workers := dpdk.WorkerLcores()
	if len(workers) == 0 {
		return nil, fmt.Errorf("bench: the EAL has no worker lcore")
	}
	lcore := workers[0]

	logf("building %d established flows and their templates", o.Flows)
	estFrames, estKeys, next := tuples(o.Flows, 0, owned)
	foreignFrames, _, next := tuples(o.Small, next, func(b uint16) bool { return !owned(b) })
	synFrames := make([][]byte, o.Small)
	for i := range synFrames {
		src, sport := tuple(next + i)
		synFrames[i] = template(src, sport, true)
	}

	cfg := dataplane.ClassifierConfig{
		VIP: benchVIP, Seed: benchSeed, ClusterMAC: benchCluster, NodeMAC: benchNode,
		MaxFlows: uint32(o.Flows + o.Small), MaxHalfOpen: uint32(o.Small),
		HalfOpen: 10 * time.Second, Idle: 900 * time.Second, Closing: 30 * time.Second,
		Ports: []uint16{80, 443},
	}
	cc, err := dataplane.NewCClassifier(cfg)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	var own dataplane.Ownership
	for b := 0; b < 65536; b++ {
		if owned(uint16(b)) {
			own.Set(uint16(b))
		}
	}
	cc.SetOwnership(&own)
	if n := cc.Preload(estKeys); n != o.Flows {
		return nil, fmt.Errorf("bench: preloaded %d flows, want %d", n, o.Flows)
	}

	var out []Scenario
	for k, sc := range []struct {
		name   string
		frames [][]byte
	}{
		{"foreign-drop", foreignFrames},
		{"syn-classify", synFrames},
		{fmt.Sprintf("established-%dk-flows", o.Flows/1024), estFrames},
	} {
		port, pool, err := replayPort(k, sc.frames)
		if err != nil {
			return nil, err
		}
		logf("%s: bare loop, then classifier, %v each", sc.name, o.Duration)
		bare, err := dataplane.Bench(lcore, port, nil, o.Duration)
		if err == nil {
			var cls dataplane.BenchResult
			cls, err = dataplane.Bench(lcore, port, cc, o.Duration)
			if err == nil {
				out = append(out, scenario("bare-rx-drop ("+sc.name+" pool)", bare, bare),
					scenario(sc.name, cls, bare))
			}
		}
		port.Close()
		pool.Free()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func scenario(name string, r, limit dataplane.BenchResult) Scenario {
	s := Scenario{
		Scenario: name, Mpps: r.Mpps(), LimitMpps: limit.Mpps(), RatioToLimit: r.Mpps() / limit.Mpps(),
		NsPerPacket: 1e3 / r.Mpps(), Packets: r.Packets, Seconds: r.Seconds,
		Dropped: r.Packets - r.Delivered, Delivered: r.Delivered,
	}
	s.ExtraNs = s.NsPerPacket - 1e3/limit.Mpps()
	return s
}

// replayPort makes a net_null port whose pool holds exactly the frames.
func replayPort(k int, frames [][]byte) (*dpdk.Port, *dpdk.Mempool, error) {
	// No per-lcore cache: the pool then hands mbufs out first in, first
	// out, and the port cycles through every template.
	pool, err := dpdk.NewPktMempool(fmt.Sprintf("bench%d", k), uint32(len(frames)), 0, 128+frameLen)
	if err != nil {
		return nil, nil, err
	}
	if err := dataplane.FillPool(pool, frames, frameLen); err != nil {
		pool.Free()
		return nil, nil, err
	}
	port, err := dpdk.OpenPort(fmt.Sprintf("net_null%d,size=%d", 10+k, frameLen))
	if err != nil {
		pool.Free()
		return nil, nil, err
	}
	if err := port.Configure(dpdk.PortConf{Mempool: pool, RxDesc: 512, TxDesc: 512}); err == nil {
		err = port.Start()
	}
	if err != nil {
		port.Close()
		pool.Free()
		return nil, nil, err
	}
	return port, pool, nil
}
