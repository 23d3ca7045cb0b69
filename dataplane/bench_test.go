package dataplane

import (
	"fmt"
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
