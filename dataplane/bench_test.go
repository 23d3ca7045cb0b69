package dataplane

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	dpdk "github.com/shoal-lb/shoal/cgo"
)

// A replay pool that frees through a per-lcore cache, as the node's pool
// does, still hands its port every template in turn, and every mbuf comes
// back: n distinct SYNs in our buckets are each accepted exactly once
// (later rounds are retransmissions), and after the worker stops the
// pool's ring holds all n mbufs again once the cache is flushed, fewer
// before (the worker's frees went through the cache).
func TestReplayPoolCyclesEveryTemplate(t *testing.T) {
	needEAL(t)
	const n = 4096
	var frames [][]byte
	for i := 0; len(frames) < n; i++ {
		tp := rtTuple(i)
		if Bucket(ConnValue(fxSeed, tp.Client.Addr(), fxVIP, tp.Client.Port(), 80))%2 != 0 {
			continue
		}
		eth := &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: tp.Client.Addr().AsSlice(), DstIP: fxVIP.AsSlice()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(tp.Client.Port()), DstPort: 80, SYN: true, Seq: 100, Window: 1000}
		frames = append(frames, rtFrame(eth, ip, tcp))
	}
	rp, err := NewReplayPool("rt_replay", frames, 64, 128+64, MbufCache)
	if err != nil {
		t.Fatal(err)
	}
	if rp.Cache != MbufCache {
		t.Fatalf("replay pool cache %d, want %d", rp.Cache, MbufCache)
	}
	portSeq++
	nic, err := dpdk.OpenPort(fmt.Sprintf("net_null%d,size=64", portSeq))
	if err != nil {
		rp.Free()
		t.Fatal(err)
	}
	defer rp.Free()
	defer nic.Close()
	if err := nic.Configure(dpdk.PortConf{Mempool: rp.Pool, RxDesc: 512, TxDesc: 512}); err != nil {
		t.Fatal(err)
	}
	if err := nic.Start(); err != nil {
		t.Fatal(err)
	}
	cfg := fxConfig()
	cfg.MaxFlows, cfg.MaxHalfOpen = 4*n, 2*n
	r, err := NewRuntime(RuntimeConfig{Classifier: cfg, NIC: nic, Tap: openPort(t, nil),
		Lcores: dpdk.WorkerLcores()[:1], IdleSleepMax: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Free()
	r.Publish(fxOwnership())
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	var c Counters
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if c = r.Stats()[0].Counters; c.RX >= 4*n {
			break
		}
		if time.Now().After(deadline) {
			r.Stop()
			t.Fatalf("%d frames in 5 s, want %d", c.RX, 4*n)
		}
	}
	r.Stop()
	c = r.Stats()[0].Counters
	if c.SynAccepted != n {
		t.Fatalf("%d SYNs accepted of %d received, want each of the %d templates once: %+v", c.SynAccepted, c.RX, n, c)
	}
	nic.Stop()
	before := rp.Pool.Avail()
	rp.flush()
	after := rp.Pool.Avail()
	if before >= n || after != n {
		t.Fatalf("pool holds %d mbufs before the cache's flush and %d after, want fewer than %d and %d", before, after, n, n)
	}
	t.Logf("%d frames, %d SYNs accepted; %d mbufs in the ring before the flush", c.RX, c.SynAccepted, before)
}

// The SYN floor sends to the tap exactly the SYNs in owned buckets, by the
// frozen connection value: of templates that are 60% SYNs in owned
// buckets, 30% SYNs in other buckets and 10% ACKs in owned buckets, it
// delivers 60% of what it receives (a wrong hash would deliver about 45%,
// one blind to the flags 70%), and the bare and header loops beside it on
// the same port deliver nothing.
func TestSYNFloorDeliversOwnedSYNs(t *testing.T) {
	needEAL(t)
	const n = 4000
	// Half the buckets at random: a wrong seed changes a CRC32C by a
	// constant XOR, which would keep fxOwnership's even buckets even.
	var own Ownership
	rng := rand.New(rand.NewSource(18))
	for b := 0; b < 65536; b++ {
		if rng.Intn(2) == 0 {
			own.Set(uint16(b))
		}
	}
	var frames [][]byte
	var ownedSYN, otherSYN, ownedACK int
	for i := 0; len(frames) < n; i++ {
		tp := rtTuple(i)
		mine := own.Has(Bucket(ConnValue(fxSeed, tp.Client.Addr(), fxVIP, tp.Client.Port(), 80)))
		syn := true
		switch {
		case mine && ownedSYN < n*6/10:
			ownedSYN++
		case mine && ownedACK < n/10:
			ownedACK++
			syn = false
		case !mine && otherSYN < n*3/10:
			otherSYN++
		default:
			continue
		}
		eth := &layers.Ethernet{SrcMAC: fxClientMAC, DstMAC: fxClusterMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: tp.Client.Addr().AsSlice(), DstIP: fxVIP.AsSlice()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(tp.Client.Port()), DstPort: 80, SYN: syn, ACK: !syn, Seq: 100, Ack: 1, Window: 1000}
		frames = append(frames, rtFrame(eth, ip, tcp))
	}
	nic, tap := openPort(t, frames), openPort(t, nil)
	lcore := dpdk.WorkerLcores()[0]
	for _, mode := range []Limit{BareLoop, HeaderLoop} {
		r, err := BenchLimit(lcore, nic, mode, 50*time.Millisecond)
		if err != nil || r.Packets == 0 || r.Delivered != 0 {
			t.Fatalf("limit %d: %+v, %v: want packets, none delivered", mode, r, err)
		}
	}
	if _, err := BenchLimit(lcore, nic, SYNFloor, time.Millisecond); err == nil {
		t.Fatal("BenchLimit ran the SYN floor without its tap and table")
	}
	r, err := BenchFloor(lcore, nic, tap, fxSeed, &own, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Packets < 10*n {
		t.Fatalf("the floor received %d frames in 200 ms, want at least %d", r.Packets, 10*n)
	}
	// The port replays the templates in order: whole rounds deliver
	// exactly 60%, the last partial one at most n frames off.
	want := float64(r.Packets) * 0.6
	if d := float64(r.Delivered) - want; d > n || d < -n {
		t.Fatalf("the floor delivered %d of %d frames, want %.0f ± %d", r.Delivered, r.Packets, want, n)
	}
	t.Logf("floor: %d frames, %d to the tap, %.1f Mpps per CPU second", r.Packets, r.Delivered, r.CPUMpps())
}
