package dpbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane"
)

// The kernel peer: what Linux itself does with the same frames. A node of a
// cluster filter built from nftables hashes the 4-tuple in a netdev ingress
// chain (jhash ... mod N, the classic iptables CLUSTERIP idea) and drops
// what is not its own. The benchmark feeds that chain on a veth from the
// same lcore that runs the worker (a net_af_packet port on the veth's
// peer), steers the receive side to CPU 0 with RPS, and divides the frames
// the chain saw by the softirq time CPU 0 spent: the peer's frames per
// second per core. A chain that drops without hashing gives the kernel's
// own limit the same way.

const peerNS = "shoalbench-nft" // not "shoal-": lab teardown removes those

const peerJhash = `table netdev shoalbench {
	counter seen { }
	chain in {
		type filter hook ingress device "vb" priority 0; policy accept;
		counter name seen
		ip daddr 198.18.0.100 meta l4proto tcp jhash ip saddr . tcp sport . ip daddr . tcp dport mod 3 seed 0x5eed != 0 drop
		drop
	}
}
`

const peerPlain = `table netdev shoalbench {
	counter seen { }
	chain in {
		type filter hook ingress device "vb" priority 0; policy accept;
		counter name seen
		drop
	}
}
`

func sh(argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench: `%s`: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nsSh(stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", peerNS}, argv...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: `%s` in %s: %v: %s", strings.Join(argv, " "), peerNS, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// inNetns runs fn on this OS thread inside ns, then returns the thread to
// its own namespace: DPDK's af_packet port binds its socket at probe time.
func inNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it is in the wrong namespace and Go
		// destroys it when the goroutine ends.
		return fmt.Errorf("bench: returning from %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// cpuTimes is one CPU's line of /proc/stat, in clock ticks.
type cpuTimes struct{ busy, softirq uint64 }

func readCPU(cpu int) (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "cpu"+strconv.Itoa(cpu) {
			continue
		}
		var v [7]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq
		return cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6], softirq: v[6]}, nil
	}
	return cpuTimes{}, fmt.Errorf("bench: no cpu%d in /proc/stat", cpu)
}

func seen() (uint64, error) {
	out, err := nsSh("", "nft", "-j", "list", "counter", "netdev", "shoalbench", "seen")
	if err != nil {
		return 0, err
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, err
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("bench: no counter in %s", out)
}

// PeerResult is the kernel peer on one chain.
type PeerResult struct {
	Chain        string  `json:"chain"`
	Frames       uint64  `json:"frames"`
	Seconds      float64 `json:"seconds"`
	SoftirqSec   float64 `json:"softirq_seconds_cpu0"`
	BusySec      float64 `json:"busy_seconds_cpu0"` // all of CPU 0's busy time: an upper bound of the peer's
	MppsPerCore  float64 `json:"mpps_per_core"`     // frames / softirq seconds
	MppsOffered  float64 `json:"mpps_offered"`      // frames the sender got out per second
	SenderRefuse uint64  `json:"sender_refused"`
}

// RunNftPeer measures the kernel peer on the foreign-drop frames.
func RunNftPeer(o DataplaneOptions) ([]PeerResult, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	workers := dpdk.WorkerLcores()
	if len(workers) == 0 {
		return nil, fmt.Errorf("bench: the EAL has no worker lcore")
	}
	sh("ip", "netns", "del", peerNS)
	if err := sh("ip", "netns", "add", peerNS); err != nil {
		return nil, err
	}
	defer sh("ip", "netns", "del", peerNS)
	for _, argv := range [][]string{
		{"ip", "-n", peerNS, "link", "add", "va", "type", "veth", "peer", "name", "vb"},
		{"ip", "-n", peerNS, "link", "set", "va", "up"},
		{"ip", "-n", peerNS, "link", "set", "vb", "up"},
	} {
		if err := sh(argv...); err != nil {
			return nil, err
		}
	}
	// The receive side runs on CPU 0, away from the sending lcore.
	if _, err := nsSh("", "sh", "-c", "echo 1 > /sys/class/net/vb/queues/rx-0/rps_cpus"); err != nil {
		return nil, err
	}
	txPool, err := dpdk.NewPktMempool("bench_peer_tx", 1023, 0, dpdk.DefaultDataRoom)
	if err != nil {
		return nil, err
	}
	defer txPool.Free()
	// The port's ioctls (probe, start: promiscuous mode by name) must run
	// in the veth's namespace too.
	var tx *dpdk.Port
	if err := inNetns(peerNS, func() error {
		var err error
		if tx, err = dpdk.OpenPort("net_af_packet7,iface=va,blocksz=4096,framesz=2048,framecnt=4096"); err != nil {
			return err
		}
		if err := tx.Configure(dpdk.PortConf{Mempool: txPool}); err != nil {
			return err
		}
		return tx.Start()
	}); err != nil {
		if tx != nil {
			tx.Close()
		}
		return nil, err
	}
	defer inNetns(peerNS, func() error { return tx.Close() })
	// The foreign-drop frames of RunDataplane.
	_, _, _, next := tuples(1<<20, 0, owned)
	fSrc, fPort, _, _ := tuples(o.Small, next, func(b uint16) bool { return !owned(b) })
	fs := make([][]byte, len(fSrc))
	for i := range fs {
		fs[i] = template(fSrc[i], fPort[i], 80, false)
	}
	rx, pool, err := replayPort(90, fs)
	if err != nil {
		return nil, err
	}
	defer pool.Free()
	defer rx.Close()
	var out []PeerResult
	for _, c := range []struct{ name, rules string }{
		{"nftables jhash mod 3 (cluster filter)", peerJhash},
		{"nftables drop, no hash (the kernel's own limit)", peerPlain},
	} {
		nsSh("", "nft", "delete", "table", "netdev", "shoalbench")
		if _, err := nsSh(c.rules, "nft", "-f", "-"); err != nil {
			return nil, err
		}
		logf("kernel peer: %s, %v", c.name, o.Duration)
		s0, err := seen()
		if err != nil {
			return nil, err
		}
		c0, err := readCPU(0)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		_, refused, err := dataplane.BenchSend(workers[0], rx, tx, o.Duration)
		if err != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond) // the backlog drains
		secs := time.Since(t0).Seconds()
		c1, _ := readCPU(0)
		s1, err := seen()
		if err != nil {
			return nil, err
		}
		r := PeerResult{Chain: c.name, Frames: s1 - s0, Seconds: secs,
			SoftirqSec: float64(c1.softirq-c0.softirq) / 100, BusySec: float64(c1.busy-c0.busy) / 100, SenderRefuse: refused}
		r.MppsOffered = float64(r.Frames) / secs / 1e6
		if r.SoftirqSec > 0 {
			r.MppsPerCore = float64(r.Frames) / r.SoftirqSec / 1e6
		}
		out = append(out, r)
	}
	return out, nil
}
