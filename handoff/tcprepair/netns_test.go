package tcprepair

import (
	"github.com/shoal-lb/shoal/internal/netns"
	"github.com/shoal-lb/shoal/internal/netns/netnstest"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
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

// newNS makes a namespace for the test (internal/netns/netnstest), named
// shoalrt-PID-N-role.
func newNS(t *testing.T, role string) string { return netnstest.New(t, "shoalrt", role) }

func run(t *testing.T, argv ...string) string { return netnstest.Run(t, argv...) }

// inNS runs fn in namespace ns (internal/netns).
func inNS(ns string, fn func() error) error { return netns.Run(ns, fn) }

func listen(t *testing.T, ns, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// acceptedPair is both ends of one connection to addr in ns: the client
// and the socket its listener accepted (the listener is closed then).
func acceptedPair(t *testing.T, ns, addr string) (client, server *net.TCPConn) {
	t.Helper()
	ln := listen(t, ns, addr)
	client = dial(t, ns, addr)
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return client, server
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
