package dpdk

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The EAL can be initialised once per process, so TestMain does it for
// every test. Tests that need it call needEAL.
var (
	ealSkip string // why EAL tests skip (not root)
	ealErr  error  // InitEAL's error, as root
	ealCfg  EALConfig
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		ealSkip = "needs root: DPDK's EAL must be initialised as root"
		os.Exit(m.Run())
	}
	ealCfg = EALConfig{
		Lcores:     "0@(0-1),1@(0-1)",
		MemoryMB:   128,
		InMemory:   true,
		FilePrefix: "shoal-cgo-test",
		NoPCI:      true,
		Vdevs:      []string{"net_null0"},
		LogLevel:   "notice",
		Extra:      []string{"--no-telemetry"},
	}
	// Hugepages when enough are free (and not disabled), else --no-huge.
	if free, err := HugepagesFree(); err == nil && free >= 64 && os.Getenv("SHOAL_TEST_NOHUGE") == "" {
		ealCfg.Hugepages = true
	}
	fmt.Fprintf(os.Stderr, "cgo test: EAL %q\n", EALArgs(ealCfg)[1:])
	ealErr = InitEAL(ealCfg)
	code := m.Run()
	if ealErr == nil {
		if err := CleanupEAL(); err != nil {
			fmt.Fprintln(os.Stderr, "CleanupEAL:", err)
			code = 1
		}
		if _, err := os.Stat("/var/run/dpdk/shoal-cgo-test"); err == nil {
			fmt.Fprintln(os.Stderr, "CleanupEAL left /var/run/dpdk/shoal-cgo-test behind")
			code = 1
		}
		if _, err := NewRing("after-cleanup", 64, false, false); !errors.Is(err, ErrNotInitialized) {
			fmt.Fprintln(os.Stderr, "call after CleanupEAL: got", err, "want ErrNotInitialized")
			code = 1
		}
		if err := InitEAL(ealCfg); err == nil {
			fmt.Fprintln(os.Stderr, "InitEAL after CleanupEAL succeeded")
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
}

func TestInitEALTwice(t *testing.T) {
	needEAL(t)
	err := InitEAL(ealCfg)
	if err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second InitEAL: %v, want an 'already initialized' error", err)
	}
}

func TestLcores(t *testing.T) {
	needEAL(t)
	if got := MainLcore(); got != 0 {
		t.Errorf("MainLcore = %d, want 0", got)
	}
	if got := WorkerLcores(); !reflect.DeepEqual(got, []uint{1}) {
		t.Errorf("WorkerLcores = %v, want [1]", got)
	}
	if s := SocketID(); s < 0 {
		t.Errorf("SocketID = %d", s)
	}
}

// TestLcoreAffinity checks what "--lcores 0@(0-1),1@(0-1)" does: the
// worker thread (named rte-worker-1 by DPDK 22.11), the main lcore thread
// and every Go thread may run on both CPUs; nothing is pinned.
func TestLcoreAffinity(t *testing.T) {
	needEAL(t)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	workers := 0
	for _, task := range tasks {
		comm, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/comm")
		name := strings.TrimSpace(string(comm))
		if strings.HasPrefix(name, "rte-worker-") {
			workers++
		}
		st, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				v = strings.TrimSpace(v)
				if v != "0-1" {
					t.Errorf("thread %s (%s) allowed on CPUs %q, want 0-1", task.Name(), name, v)
				} else if name != "cgo.test" {
					t.Logf("thread %s (%s): CPUs %s", task.Name(), name, v)
				}
			}
		}
	}
	if workers != 1 {
		t.Errorf("%d rte-worker-N threads, want 1", workers)
	}
}

func TestLaunchOnLcore(t *testing.T) {
	needEAL(t)
	w := WorkerLcores()[0]
	arg := newProbeArg(41)
	defer freeProbeArg(arg)
	if err := LaunchOnLcore(w, probeFunc(), arg); err != nil {
		t.Fatalf("LaunchOnLcore: %v", err)
	}
	if got := WaitLcore(w); got != 42 {
		t.Errorf("WaitLcore = %d, want 42", got)
	}
	if got := probeLcore(arg); got != int(w) {
		t.Errorf("probe ran on lcore %d, want %d", got, w)
	}
	// Again: the lcore is idle and can be reused.
	if err := LaunchOnLcore(w, probeFunc(), arg); err != nil {
		t.Fatalf("second LaunchOnLcore: %v", err)
	}
	if got := WaitLcore(w); got != 42 {
		t.Errorf("second WaitLcore = %d, want 42", got)
	}
	if err := LaunchOnLcore(MainLcore(), probeFunc(), arg); err == nil {
		t.Errorf("LaunchOnLcore on the main lcore succeeded")
	}
	if err := LaunchOnLcore(77, probeFunc(), arg); err == nil {
		t.Errorf("LaunchOnLcore on a disabled lcore succeeded")
	}
}

func TestMempool(t *testing.T) {
	needEAL(t)
	mp, err := NewPktMempool("test_pool", 1023, 32, DefaultDataRoom)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Free()
	if mp.Ptr() == nil {
		t.Errorf("Ptr is nil")
	}
	if a, u := mp.Avail(), mp.InUse(); a != 1023 || u != 0 {
		t.Errorf("Avail, InUse = %d, %d; want 1023, 0", a, u)
	}
	_, err = NewPktMempool("test_pool", 63, 0, DefaultDataRoom)
	if err == nil || !errors.Is(err, syscall.EEXIST) || !strings.Contains(err.Error(), `"test_pool"`) {
		t.Errorf("duplicate mempool: %v, want EEXIST naming the pool", err)
	}
	t.Logf("duplicate: %v", err)
	mp.Free()
	if mp.Ptr() != nil || mp.Avail() != 0 {
		t.Errorf("freed pool still has a pointer")
	}
	mp.Free() // no-op
}

func TestRing(t *testing.T) {
	needEAL(t)
	r, err := NewRing("test_ring", 1024, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ptr() == nil || r.Capacity() != 1023 || r.Count() != 0 {
		t.Errorf("ring: ptr %p capacity %d count %d", r.Ptr(), r.Capacity(), r.Count())
	}
	r.Free()
	if r.Ptr() != nil {
		t.Errorf("freed ring still has a pointer")
	}
	// The name is free again.
	r, err = NewRing("test_ring", 64, false, false)
	if err != nil {
		t.Fatalf("recreate: %v", err)
	}
	r.Free()
	_, err = NewRing("test_ring_bad", 1000, false, false)
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("size 1000: %v, want EINVAL", err)
	}
	t.Logf("size 1000: %v", err)
}

// testPort configures and starts p, checks MAC/link/stats/xstats and pumps
// n frames through queue 0, then stops it.
func testPort(t *testing.T, p *Port, loopback bool) {
	t.Helper()
	mp, err := NewPktMempool("pool_"+strconv.Itoa(int(p.ID)), 2047, 32, DefaultDataRoom)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Free()
	if err := p.Configure(PortConf{}); err == nil {
		t.Errorf("Configure without a mempool succeeded")
	}
	if err := p.Configure(PortConf{RxQueues: 1, TxQueues: 1, RxDesc: 256, TxDesc: 256, Mempool: mp}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	mac, err := p.MAC()
	if err != nil || len(mac) != 6 {
		t.Errorf("MAC = %v, %v", mac, err)
	}
	link, err := p.Link()
	if err != nil {
		t.Errorf("Link: %v", err)
	}
	t.Logf("%s: port %d mac %s link %+v", p.Name, p.ID, mac, link)

	const n = 100
	tx, rx := selftestPump(p, mp, n)
	if tx != n || rx != n {
		t.Errorf("pump: sent %d received %d, want %d each", tx, rx, n)
	}
	if u := mp.InUse(); u != 0 && !loopback {
		t.Logf("mbufs in use after pump: %d", u)
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.TxPackets != n || st.RxPackets != n {
		t.Errorf("Stats = %+v, want %d rx and tx packets", st, n)
	}
	xs, err := p.XStats()
	if err != nil || len(xs) == 0 {
		t.Fatalf("XStats = %d entries, %v", len(xs), err)
	}
	if xs["rx_good_packets"] != n || xs["tx_good_packets"] != n {
		t.Errorf("xstats rx_good_packets %d tx_good_packets %d, want %d", xs["rx_good_packets"], xs["tx_good_packets"], n)
	}
	t.Logf("%d xstats, stats %+v", len(xs), st)
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func TestPortNull(t *testing.T) {
	needEAL(t)
	// net_null0 was probed by the EAL (--vdev): OpenPort adopts it.
	p, err := OpenPort("net_null0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "net_null0" {
		t.Errorf("Name = %q", p.Name)
	}
	testPort(t, p, false)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// Hot-plugged, with an argument.
	p, err = OpenPort("net_null1,size=128")
	if err != nil {
		t.Fatal(err)
	}
	testPort(t, p, false)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := p.Stats(); err == nil {
		t.Errorf("Stats after Close succeeded")
	}
}

func TestPortRing(t *testing.T) {
	needEAL(t)
	// net_ring without arguments loops every queue's tx back to its rx.
	p, err := OpenPort("net_ring0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetPromiscuous(true); err != nil {
		t.Errorf("SetPromiscuous: %v", err)
	}
	if err := p.SetAllMulticast(true); err != nil {
		t.Errorf("SetAllMulticast: %v", err)
	}
	testPort(t, p, true)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// Closed and removed: the same name can be opened again.
	p, err = OpenPort("net_ring0")
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestOpenPortBad(t *testing.T) {
	needEAL(t)
	for _, devargs := range []string{"net_af_packet0,iface=nope", "net_nosuchdriver0", "0000:ff:1f.7"} {
		_, err := OpenPort(devargs)
		if err == nil {
			t.Errorf("OpenPort(%q) succeeded", devargs)
			continue
		}
		t.Logf("%v", err)
		want := fmt.Sprintf("open port %q: ", devargs)
		var de *Error
		if !strings.HasPrefix(err.Error(), want) || !errors.As(err, &de) || de.Code == 0 || de.Msg == "" {
			t.Errorf("OpenPort(%q) error %q: want prefix %q and a DPDK code", devargs, err, want)
		}
	}
	_, err := OpenPort("net_af_packet0,iface=nope")
	if err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "dpdk:") {
		t.Errorf("af_packet error lacks DPDK's log: %v", err)
	}
}

func TestPortTap(t *testing.T) {
	needEAL(t)
	const ifname = "shoaltest0"
	const mac = "02:00:5e:00:53:01"
	if _, err := net.InterfaceByName(ifname); err == nil {
		t.Fatalf("%s exists before the test", ifname)
	}
	p, err := OpenPort("net_tap0,iface=" + ifname + ",mac=" + mac)
	if err != nil {
		t.Fatal(err)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		p.Close()
		t.Fatalf("tap interface: %v", err)
	}
	if ifc.HardwareAddr.String() != mac {
		t.Errorf("kernel MAC %s, want %s", ifc.HardwareAddr, mac)
	}
	if m, err := p.MAC(); err != nil || m.String() != mac {
		t.Errorf("MAC = %v, %v; want %s", m, err, mac)
	}
	mp, err := NewPktMempool("tap_pool", 1023, 32, DefaultDataRoom)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Free()
	if err := p.Configure(PortConf{RxQueues: 1, TxQueues: 1, Mempool: mp, MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if l, err := p.Link(); err != nil {
		t.Errorf("Link: %v", err)
	} else {
		t.Logf("tap link %+v", l)
	}
	if err := p.SetPromiscuous(true); err != nil {
		t.Errorf("SetPromiscuous: %v", err)
	}
	if _, err := p.XStats(); err != nil {
		t.Errorf("XStats: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The kernel removes the interface when the tap fd is closed.
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := net.InterfaceByName(ifname)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists after Close", ifname)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
