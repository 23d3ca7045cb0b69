package dataplane

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dpdk "github.com/shoal-lb/shoal/cgo"
)

// openTapPort opens a net_tap port configured with RxWait, its kernel
// interface without IPv6 (whose solicitations would wake the worker).
func openTapPort(t *testing.T, ifname string) *dpdk.Port {
	t.Helper()
	portSeq++
	pool, err := dpdk.NewPktMempool(fmt.Sprintf("rt_pool%d", portSeq), 2047, 32, dpdk.DefaultDataRoom)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Free)
	p, err := dpdk.OpenPort(fmt.Sprintf("net_tap%d,iface=%s", 10+portSeq, ifname))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644)
	if err := p.Configure(dpdk.PortConf{Mempool: pool, RxDesc: 512, TxDesc: 512, RxWait: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWorkerWaitsOnFDs: a worker whose two devices give receive
// descriptors (two taps here) sleeps on them. With a 50 ms cap, a frame
// the kernel sends into the NIC side is received after the wake-up
// latency (75-475 us measured; a median within 2 ms asked), not when a
// sleep runs out (25 ms on average with timed sleeps), and a command still
// ends the sleep at once (its signal interrupts epoll_pwait2 as it did
// nanosleep).
func TestWorkerWaitsOnFDs(t *testing.T) {
	needEAL(t)
	const sleepMax = 50 * time.Millisecond
	nic, tap := openTapPort(t, "sdpfdnic0"), openTapPort(t, "sdpfdtap0")
	cfg := fxConfig()
	cfg.MaxFlows, cfg.MaxHalfOpen = 4096, 1024
	r, err := NewRuntime(RuntimeConfig{Classifier: cfg, NIC: nic, Tap: tap,
		Lcores: dpdk.WorkerLcores()[:1], IdleSleepMax: sleepMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Free)
	if w := r.IdleWait(); len(w) != 1 || w[0] != IdleWaitFDs {
		t.Fatalf("IdleWait = %q, want [%q]", w, IdleWaitFDs)
	}
	r.Publish(fxOwnership())
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)

	ifi, err := net.InterfaceByName("sdpfdnic0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	frame := make([]byte, 60) // to a foreign MAC, an unknown ethertype: dropped
	copy(frame, []byte{0x02, 0, 0x5e, 0, 0x53, 0x77, 0x02, 0, 0x5e, 0, 0x53, 0x78, 0x88, 0xb5})
	var took []time.Duration
	for i := 0; i < 15; i++ {
		time.Sleep(3 * sleepMax) // idle, deep in a sleep
		rx := r.Stats()[0].Counters.RX
		t0 := time.Now()
		if err := unix.Sendto(s, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
			t.Fatal(err)
		}
		for r.Stats()[0].Counters.RX == rx {
			if time.Since(t0) > time.Second {
				t.Fatalf("frame %d not received within 1 s", i)
			}
			time.Sleep(20 * time.Microsecond)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	st := r.Stats()[0]
	t.Logf("15 frames to an idle worker (cap %v): min %v, median %v, max %v; sleeps %d, empty wake-ups %d",
		sleepMax, took[0], took[7], took[14], st.IdleSleeps, st.EmptyWakes)
	if took[7] > 2*time.Millisecond {
		t.Errorf("median %v from send to receive on a worker waiting on its devices; want well under its %v cap", took[7], sleepMax)
	}

	var cmd []time.Duration
	for i := 0; i < 10; i++ {
		time.Sleep(3 * sleepMax)
		t0 := time.Now()
		if err := r.Install(context.Background(), FlowSpec{Tuple: rtTuple(i + 1), State: Established}); err != nil {
			t.Fatalf("Install: %v", err)
		}
		cmd = append(cmd, time.Since(t0))
	}
	slices.Sort(cmd)
	t.Logf("10 Installs on a worker waiting on its devices: median %v", cmd[5])
	if cmd[5] > 5*time.Millisecond {
		t.Errorf("median Install %v on a worker waiting on its devices; want well under its %v cap (the wake failed)", cmd[5], sleepMax)
	}
}
