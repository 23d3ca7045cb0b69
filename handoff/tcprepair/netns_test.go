package tcprepair

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needRoot skips unless the test can make network namespaces and use
// TCP_REPAIR (CAP_NET_ADMIN).
func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: namespace tests run in the full suite")
	}
	if !canRepair() {
		t.Skip("needs root: TCP_REPAIR needs CAP_NET_ADMIN and the test makes network namespaces")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("needs nft (nftables) to count resets: %v", err)
	}
}

func canRepair() bool {
	_, err := exec.LookPath("ip")
	return os.Geteuid() == 0 && err == nil
}

func pid() int { return os.Getpid() }

func command(argv ...string) ([]byte, error) {
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

var nsCount atomic.Int32

// newNS makes a network namespace named shoalrt-PID-N-role (never one of
// the lab's shoal-* names), with lo up and IPv6 off (no router or neighbour
// solicitations to teach a bridge where a MAC lives), deleted when the test
// ends however it ends.
func newNS(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("shoalrt-%d-%d-%s", os.Getpid(), nsCount.Add(1), role)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return name
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// inNS runs fn on an OS thread that joined namespace ns; sockets fn makes
// belong to ns for life. The thread is never unlocked, so the runtime
// destroys it afterwards and no other goroutine ever runs in ns.
func inNS(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

func listen(t *testing.T, ns, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func dial(t *testing.T, ns, addr string) *net.TCPConn {
	t.Helper()
	var c net.Conn
	if err := inNS(ns, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 3*time.Second); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// countRSTs installs nftables counters of TCP resets received and sent in
// ns and returns a function reading them.
func countRSTs(t *testing.T, ns string) func() (in, out int) {
	t.Helper()
	return countFlag(t, ns, "rst")
}

// countFlag counts TCP segments with flag (rst, fin) received and sent in ns.
func countFlag(t *testing.T, ns, flag string) func() (in, out int) {
	t.Helper()
	rules := strings.ReplaceAll(`table inet shoalrt_FLAG {
	counter FLAG_in {}
	counter FLAG_out {}
	chain in {
		type filter hook input priority 0;
		tcp flags & FLAG == FLAG counter name "FLAG_in"
	}
	chain out {
		type filter hook output priority 0;
		tcp flags & FLAG == FLAG counter name "FLAG_out"
	}
}`, "FLAG", flag)
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	re := regexp.MustCompile(`packets (\d+)`)
	read := func(name string) int {
		m := re.FindStringSubmatch(run(t, "ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "shoalrt_"+flag, name))
		if m == nil {
			t.Fatalf("no packet count for counter %s", name)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return func() (int, int) { return read(flag + "_in"), read(flag + "_out") }
}

// sockInt reads an ioctl integer (SIOCINQ, SIOCOUTQ) of c.
func sockInt(t *testing.T, c *net.TCPConn, req uint) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), req) }); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	return n
}

func tcpInfo(t *testing.T, c *net.TCPConn) *unix.TCPInfo {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ti *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { ti, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	return ti
}
