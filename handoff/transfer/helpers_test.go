package transfer

import (
	"context"
	"github.com/shoal-lb/shoal/internal/netns"
	"github.com/shoal-lb/shoal/internal/netns/netnstest"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// needRoot skips unless the test can make network namespaces and use
// TCP_REPAIR (CAP_NET_ADMIN).
func needRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: namespace tests run in the full suite")
	}
	if _, err := exec.LookPath("ip"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and ip(8): TCP_REPAIR needs CAP_NET_ADMIN and the test makes network namespaces")
	}
}

// newNS makes a namespace for the test (internal/netns/netnstest), named
// shoaltr-PID-N-role.
func newNS(t testing.TB, role string) string { return netnstest.New(t, "shoaltr", role) }

func run(t testing.TB, argv ...string) string { return netnstest.Run(t, argv...) }

// inNS runs fn in namespace ns (internal/netns).
func inNS(ns string, fn func() error) error { return netns.Run(ns, fn) }

// loopPair is a client and a server end of one connection on the
// loopback of namespace ns.
func loopPair(t testing.TB, ns string) (client, server *net.TCPConn) {
	t.Helper()
	err := inNS(ns, func() error {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		defer ln.Close()
		if client, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr)); err != nil {
			return err
		}
		server, err = ln.AcceptTCP()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// testKey is the channel key of the tests.
func testKey(t testing.TB) wire.Key {
	k, err := wire.DeriveKey([]byte("shoal transfer test cluster key!"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// staticPeers maps node IDs to addresses.
type staticPeers map[string]netip.Addr

func (p staticPeers) Addr(n string) (netip.Addr, bool) { a, ok := p[n]; return a, ok }

// recorder is a fake DataPlane recording its calls in order; failing
// methods are set per test.
type recorder struct {
	mu     sync.Mutex
	calls  []string
	fail   map[string]error
	onCall func(op string, f Flow)
}

func (r *recorder) do(op string, f Flow) error {
	r.mu.Lock()
	r.calls = append(r.calls, op)
	err := r.fail[op]
	hook := r.onCall
	r.mu.Unlock()
	if hook != nil {
		hook(op, f)
	}
	return err
}

func (r *recorder) Adopt(_ context.Context, f Flow) error   { return r.do("adopt", f) }
func (r *recorder) Release(_ context.Context, f Flow) error { return r.do("release", f) }
func (r *recorder) Forget(_ context.Context, f Flow) error  { return r.do("forget", f) }

func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, ",")
}

// quietLog discards the Mover's warnings unless -v.
func quietLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

func tcpInfo(c *net.TCPConn) *unix.TCPInfo {
	rc, err := c.SyscallConn()
	if err != nil {
		return &unix.TCPInfo{}
	}
	var ti *unix.TCPInfo
	rc.Control(func(fd uintptr) { ti, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if ti == nil {
		ti = &unix.TCPInfo{}
	}
	return ti
}
