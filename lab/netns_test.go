package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needLab skips unless this machine can build the lab, and makes sure the
// test leaves no lab behind however it ends.
func needLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: namespace tests run in the full suite")
	}
	if err := CheckHost(); err != nil {
		t.Skipf("cannot build the lab here: %v", err)
	}
	t.Cleanup(func() {
		if err := Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		assertNoLab(t)
	})
}

// assertNoLab fails unless Down left nothing: no namespace, no state dir.
func assertNoLab(t *testing.T) {
	t.Helper()
	names, err := labNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Errorf("namespaces left behind: %v", names)
	}
	if _, err := os.Stat(StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind (%v)", StateDir, err)
	}
}

func upTest(t *testing.T, o Options) *Lab {
	t.Helper()
	o.Log = testLog{t}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// sh runs argv in where and returns its trimmed output.
func sh(t *testing.T, where string, argv ...string) string {
	t.Helper()
	out, err := Exec(context.Background(), where, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %v: %s", where, argv, err, out)
	}
	return strings.TrimSpace(string(out))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket on eth0 in where, the same kind of
// socket (ETH_P_ALL, bound to the device) the DPDK af_packet PMD uses.
func packetSocket(t *testing.T, where string) int {
	t.Helper()
	var fd int
	err := InNamespace(where, func() error {
		ifi, err := net.InterfaceByName(Interface)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", where, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return fd
}

// awaitFrame reads fd until a frame satisfies match or d passes.
func awaitFrame(fd int, d time.Duration, match func([]byte) bool) bool {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout; look at the clock again
		}
		if match(buf[:n]) {
			return true
		}
	}
	return false
}

// TestNetwork builds the namespaces without nodes and checks each property
// the nodes rely on.
func TestNetwork(t *testing.T) {
	needLab(t)
	const n = 3
	l := upTest(t, Options{Nodes: n, NetworkOnly: true, StaticNeighbor: true})
	if got := l.NodeIDs(); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("NodeIDs = %v", got)
	}

	names, _ := labNamespaces()
	slices.Sort(names)
	want := []string{"shoal-br", "shoal-client", "shoal-n1", "shoal-n2", "shoal-n3"}
	if !slices.Equal(names, want) {
		t.Fatalf("namespaces %v, want %v", names, want)
	}

	if v := sh(t, "br", "cat", "/sys/class/net/br0/bridge/multicast_snooping"); v != "0" {
		t.Errorf("bridge multicast_snooping = %s, want 0", v)
	}
	for _, w := range []string{"br", "client", "n1", "n2", "n3"} {
		v := sh(t, w, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6", "net.ipv6.conf.lo.disable_ipv6")
		if strings.Fields(v)[0] != "1" || strings.Fields(v)[1] != "1" {
			t.Errorf("%s: IPv6 not disabled: %q", w, v)
		}
	}
	if out := sh(t, "client", "ethtool", "-k", Interface); !strings.Contains(out, "tx-checksumming: off") {
		t.Errorf("client tx checksum offload is on:\n%s", out)
	}
	if out := sh(t, "client", "ip", "-br", "addr", "show", "dev", Interface); !strings.Contains(out, ClientIP+"/24") {
		t.Errorf("client address: %s", out)
	}
	if out := sh(t, "client", "ip", "neigh", "show", VIP); !strings.Contains(out, ClusterMAC) || !strings.Contains(out, "PERMANENT") {
		t.Errorf("client has no static neighbour VIP → cluster MAC: %q", out)
	}
	for k := 1; k <= n; k++ {
		w := NodeID(k)
		out := sh(t, w, "ip", "-o", "addr", "show", "dev", Interface)
		if strings.Contains(out, "inet") {
			t.Errorf("%s: eth0 has an address: %s", w, out)
		}
		out = sh(t, w, "ip", "-o", "link", "show", "dev", Interface)
		if !strings.Contains(out, ",UP") || !strings.Contains(out, NodeMAC(k)) {
			t.Errorf("%s: eth0 not up with MAC %s: %s", w, NodeMAC(k), out)
		}
		if out := sh(t, w, "nft", "list", "table", "netdev", "shoal_lab"); !strings.Contains(out, "policy drop") {
			t.Errorf("%s: no ingress drop: %s", w, out)
		}
	}
	for _, f := range []string{"index.html", "obj/1k", "obj/1m", "obj/100m"} {
		if _, err := os.Stat(ContentDir + "/" + f); err != nil {
			t.Errorf("content: %v", err)
		}
	}

	t.Run("ClusterMACFloodsPastIngressDrop", func(t *testing.T) {
		// A datagram to the VIP goes to the cluster MAC (static neighbour);
		// the bridge must flood it to every node, and a packet socket must
		// see it although the ingress hook drops it before the kernel does.
		fds := make([]int, n)
		for k := 1; k <= n; k++ {
			fds[k-1] = packetSocket(t, NodeID(k))
		}
		before := nftDropped(t, "n1")
		payload := []byte(fmt.Sprintf("shoal-lab-probe-%d", time.Now().UnixNano()))
		c, err := DialContext(context.Background(), "client", "udp", VIP+":9")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		cluster, _ := net.ParseMAC(ClusterMAC)
		client, _ := net.ParseMAC(ClientMAC)
		for k := 1; k <= n; k++ {
			ok := awaitFrame(fds[k-1], 3*time.Second, func(f []byte) bool {
				return len(f) > 14 && bytes.Equal(f[0:6], cluster) && bytes.Equal(f[6:12], client) &&
					binary.BigEndian.Uint16(f[12:14]) == 0x0800 && bytes.Contains(f, payload)
			})
			if !ok {
				t.Errorf("%s: packet socket did not see the datagram to the cluster MAC", NodeID(k))
			}
		}
		if after := nftDropped(t, "n1"); after <= before {
			t.Errorf("n1 ingress drop counter %d → %d: the frame did not reach the ingress hook", before, after)
		}
	})

	t.Run("KernelBlindBehindIngressDrop", func(t *testing.T) {
		// n1 keeps its filter, n2 loses it; both get a temporary address
		// and a TCP listener. Only n2's kernel may answer (ARP, then TCP).
		sh(t, "n1", "ip", "addr", "add", "198.18.0.201/24", "dev", Interface)
		sh(t, "n2", "ip", "addr", "add", "198.18.0.202/24", "dev", Interface)
		sh(t, "n2", "nft", "delete", "table", "netdev", "shoal_lab")
		for _, x := range []struct{ where, addr string }{{"n1", "198.18.0.201:7777"}, {"n2", "198.18.0.202:7777"}} {
			var ln net.Listener
			if err := InNamespace(x.where, func() (err error) { ln, err = net.Listen("tcp", x.addr); return err }); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("hello from " + x.where))
					c.Close()
				}
			}()
		}
		fd1 := packetSocket(t, "n1")

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := DialContext(ctx, "client", "tcp", "198.18.0.202:7777")
		if err != nil {
			t.Fatalf("client cannot reach the unfiltered n2: %v", err)
		}
		buf := make([]byte, 64)
		nr, _ := c.Read(buf)
		c.Close()
		if string(buf[:nr]) != "hello from n2" {
			t.Errorf("n2 said %q", buf[:nr])
		}

		ctx2, cancel2 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel2()
		if c, err := DialContext(ctx2, "client", "tcp", "198.18.0.201:7777"); err == nil {
			c.Close()
			t.Error("the client reached n1's kernel through the ingress drop")
		}
		// The client's ARP requests for n1's address reached n1's packet
		// socket all the same.
		target := net.ParseIP("198.18.0.201").To4()
		if !awaitFrame(fd1, 3*time.Second, func(f []byte) bool {
			return len(f) >= 42 && binary.BigEndian.Uint16(f[12:14]) == 0x0806 && bytes.Equal(f[38:42], target)
		}) {
			t.Error("n1's packet socket saw no ARP request for 198.18.0.201")
		}
	})

	t.Run("DownRemovesProcessesInNamespaces", func(t *testing.T) {
		cmd := Exec(context.Background(), "client", "sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := Down(); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("sleep in the client namespace ended with %v, want SIGTERM from Down", err)
		}
		assertNoLab(t)
		if err := Down(); err != nil {
			t.Errorf("second Down: %v", err)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: lockName, Net: "unix"})
		if err != nil {
			t.Errorf("the lab lock is still held after Down: %v", err)
		} else {
			ln.Close()
		}
	})
}

var nftCounter = regexp.MustCompile(`counter packets (\d+)`)

func nftDropped(t *testing.T, where string) int {
	t.Helper()
	m := nftCounter.FindStringSubmatch(sh(t, where, "nft", "list", "table", "netdev", "shoal_lab"))
	if m == nil {
		t.Fatalf("%s: no counter in the ingress chain", where)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// TestUpReplacesLeftovers checks that Up clears a lab left behind by a crash,
// including namespaces the new lab does not use.
func TestUpReplacesLeftovers(t *testing.T) {
	needLab(t)
	upTest(t, Options{Nodes: 4, NetworkOnly: true})
	releaseLock() // as if the process that built it had died
	upTest(t, Options{Nodes: 2, NetworkOnly: true})
	if ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: lockName, Net: "unix"}); err == nil {
		ln.Close()
		t.Error("the lab lock is free while a lab is up")
	}
	names, _ := labNamespaces()
	slices.Sort(names)
	if want := []string{"shoal-br", "shoal-client", "shoal-n1", "shoal-n2"}; !slices.Equal(names, want) {
		t.Errorf("after a second Up: namespaces %v, want %v", names, want)
	}
	if out := sh(t, "client", "ip", "neigh", "show", VIP); strings.Contains(out, "PERMANENT") {
		t.Errorf("static neighbour present without StaticNeighbor: %q", out)
	}
}
