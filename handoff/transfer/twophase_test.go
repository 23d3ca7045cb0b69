package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// TestNoReadyThaws: a destination that takes the HANDOFF and never
// answers READY (dead, cut off, or its READY lost) cannot release the
// connection, as no COMMIT was sent: the origin thaws within ReadyShare
// of the timeout, never sends COMMIT, and serves the connection end to
// end.
func TestNoReadyThaws(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	d := newFakeDest(t, testKey(t), func(wire.Message) wire.Body { return nil }, nil)
	dp := &recorder{}
	const timeout = 400 * time.Millisecond
	m := origin(t, d.port(), dp, timeout)
	client, server, request := peeked(t, ns)
	t0 := time.Now()
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	took := time.Since(t0)
	var e *Error
	if !intact || !errors.As(err, &e) || e.Cause != CauseNoReady {
		t.Fatalf("Move: intact %v, %v; want intact, no_ready", intact, err)
	}
	ready := time.Duration(float64(timeout) * ReadyShare)
	if took < ready || took > ready+200*time.Millisecond {
		t.Errorf("Move returned after %v; READY is awaited %v", took, ready)
	}
	if n := d.frames.Load(); n != 1 || dp.log() != "" {
		t.Errorf("%d frames reached the destination (want the HANDOFF only), data plane %q", n, dp.log())
	}
	if s := m.Stats(); s.Failures[CauseNoReady] != 1 || len(s.Refusals) != 0 || len(s.Steps) != 0 {
		t.Errorf("stats %+v: want one no_ready failure, no refusal (a timeout is not a wire refusal), no steps timed", s)
	}
	servesEndToEnd(t, client, server, request)
}

// TestEOFIsNotARefusal: a destination that closes the channel after the
// HANDOFF: the origin thaws (no COMMIT was sent) and counts a no_ready
// failure, not a wire refusal.
func TestEOFIsNotARefusal(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wire.ReadFrame(c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	m := origin(t, ln.Addr().(*net.TCPAddr).Port, &recorder{}, time.Second)
	client, server, request := peeked(t, ns)
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	var e *Error
	if !intact || !errors.As(err, &e) || e.Cause != CauseNoReady {
		t.Fatalf("Move: intact %v, %v; want intact, no_ready", intact, err)
	}
	if s := m.Stats(); len(s.Refusals) != 0 {
		t.Errorf("refusals %v after an EOF, want none", s.Refusals)
	}
	servesEndToEnd(t, client, server, request)
}

// TestAnswerAtTheDeadlineIsActedOn: an authentic ACCEPT read just as the
// Move's context ends is acted on (the flow is withdrawn, the move
// counted), not thrown away as a loss; only its channel connection is not
// pooled. The clock (Config.Now, which Open consults) cancels the
// context while the ACCEPT is being opened.
func TestAnswerAtTheDeadlineIsActedOn(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	var armed atomic.Bool
	d := newFakeDest(t, testKey(t), func(m wire.Message) wire.Body {
		if m.Type == wire.TypeHandoff {
			return &wire.Ready{}
		}
		armed.Store(true) // the next clock reading is the ACCEPT's Open
		return &wire.Accept{}
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dp := &recorder{}
	m := New(Config{Self: "a", Key: testKey(t), Port: d.port(), Timeout: time.Second, DataPlane: dp,
		Peers: staticPeers{"b": netip.MustParseAddr("127.0.0.1")}, Log: quietLog(t),
		Now: func() time.Time {
			if armed.Load() {
				cancel()
			}
			return time.Now()
		}})
	t.Cleanup(func() { m.Close() })
	_, server, _ := peeked(t, ns)
	intact, err := m.Move(ctx, server, "b", wire.ReasonGroup)
	if intact || err != nil {
		t.Fatalf("Move: intact %v, %v; want moved", intact, err)
	}
	if dp.log() != "release" || isOpen(server) {
		t.Errorf("data plane %q, frozen socket open %v; want the flow withdrawn and the socket closed", dp.log(), isOpen(server))
	}
	if s := m.Stats(); s.Moves["group"] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// realDest runs a real destination Mover ("b") on the loopback of the
// test's own namespace, with data plane dp.
func realDest(t *testing.T, dp DataPlane, timeout time.Duration, adopted *atomic.Int32) (*Mover, net.Listener) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dest := New(Config{Self: "b", Key: testKey(t), Timeout: timeout, DataPlane: dp, Log: quietLog(t)})
	served := make(chan error, 1)
	go func() {
		served <- dest.Serve(ln, func(c *net.TCPConn, _ string) { adopted.Add(1); c.Close() })
	}()
	t.Cleanup(func() { ln.Close(); <-served; dest.Shutdown(context.Background()) })
	return dest, ln
}

// TestDestinationBudget: the destination gives itself half of the timeout
// from the HANDOFF's receipt; an Adopt that returns after it (the origin
// would soon stop waiting) is undone (forget, abort) and refused busy,
// and the origin thaws.
func TestDestinationBudget(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	const timeout = 400 * time.Millisecond
	ddp := &recorder{onCall: func(op string, _ Flow) {
		if op == "adopt" {
			time.Sleep(timeout/2 + 50*time.Millisecond)
		}
	}}
	var adopted atomic.Int32
	dest, ln := realDest(t, ddp, timeout, &adopted)
	m := origin(t, ln.Addr().(*net.TCPAddr).Port, &recorder{}, timeout)
	client, server, request := peeked(t, ns)
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	var re *RefusedError
	if !intact || !errors.As(err, &re) || re.Cause != wire.CauseBusy {
		t.Fatalf("Move: intact %v, %v; want a busy refusal", intact, err)
	}
	if got := ddp.log(); got != "adopt,forget" || adopted.Load() != 0 {
		t.Errorf("destination data plane %q, %d adopted; want adopt,forget and none", got, adopted.Load())
	}
	if s := dest.Stats(); s.Failures[CauseBudget] != 1 {
		t.Errorf("destination stats %+v", s)
	}
	servesEndToEnd(t, client, server, request)
}

// handoffFrame is a HANDOFF from origin "a" (or ep's node) of a
// connection between two loopback ports nobody uses: the destination
// restores it in the test's namespace, silently, and nothing answers it.
func handoffFrame(t *testing.T, ep *wire.Endpoint, id uint64) []byte {
	h := &wire.Handoff{Client: netip.MustParseAddrPort("127.0.0.1:40001"), VIP: netip.MustParseAddrPort("127.0.0.1:40002"),
		Reason: wire.ReasonGroup, State: wire.TCPState{MSS: 1460, SendSeq: 1000, RecvSeq: 2000, RecvQueue: []byte("GET / HTTP/1.1\r\n\r\n"),
			Window: wire.Window{SndWl1: 2000, SndWnd: 65535, MaxWindow: 65535, RcvWnd: 65535, RcvWup: 2018}}}
	f, err := ep.Seal("b", id, h)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readMsg(t *testing.T, ep *wire.Endpoint, c net.Conn, within time.Duration) (wire.Message, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	raw, err := wire.ReadFrame(c)
	if err != nil {
		return wire.Message{}, err
	}
	return ep.Open(raw)
}

// TestNoCommitAborts: the destination restores, adopts and answers READY,
// and no COMMIT comes (the origin thawed: its READY was lost, or it gave
// up): within its budget the destination forgets the flow, then aborts
// the silent socket (the other order leaves its kernel receiving the flow
// with no socket, and resetting the connection the origin thawed), and
// only then refuses busy; the connection is never released nor given to
// adopt.
func TestNoCommitAborts(t *testing.T) {
	needRoot(t)
	const timeout = 400 * time.Millisecond
	var socketAtForget atomic.Value
	ddp := &recorder{onCall: func(op string, f Flow) {
		if op == "forget" {
			socketAtForget.Store(tcpSocketState(t, f.VIP, f.Client))
		}
	}}
	var adopted atomic.Int32
	dest, ln := realDest(t, ddp, timeout, &adopted)
	ep := wire.NewEndpoint(testKey(t), "a", 0, nil)
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(handoffFrame(t, ep, 7))
	m, err := readMsg(t, ep, c, time.Second)
	if err != nil || m.Type != wire.TypeReady || m.HandoffID != 7 {
		t.Fatalf("first answer %+v, %v; want READY for 7", m, err)
	}
	t0 := time.Now()
	m, err = readMsg(t, ep, c, time.Second)
	waited := time.Since(t0)
	if r, ok := m.Body.(*wire.Refuse); err != nil || !ok || r.Cause != wire.CauseBusy {
		t.Fatalf("second answer %+v, %v; want REFUSE busy", m, err)
	}
	if waited > timeout/2+100*time.Millisecond {
		t.Errorf("REFUSE %v after READY; the budget is %v from the HANDOFF", waited, timeout/2)
	}
	if got := ddp.log(); got != "adopt,forget" || adopted.Load() != 0 {
		t.Errorf("destination data plane %q, %d adopted; want adopt,forget and none", got, adopted.Load())
	}
	if st, _ := socketAtForget.Load().(string); st != "01" {
		t.Errorf("when the flow was forgotten, the restored socket's state was %q; want it still there, ESTABLISHED (01)", st)
	}
	if s := dest.Stats(); s.Failures[CauseNoCommit] != 1 || len(s.Adopted) != 0 || len(s.Steps) != 0 {
		t.Errorf("destination stats %+v; want no steps timed for an aborted handoff", s)
	}
}

// TestRefuseOnlyAfterForget: when forgetting the aborted flow fails, the
// destination does not answer REFUSE (the origin must not be told all is
// undone): it closes the channel silently.
func TestRefuseOnlyAfterForget(t *testing.T) {
	needRoot(t)
	ddp := &recorder{fail: map[string]error{"adopt": errors.New("table full"), "forget": errors.New("ring full")}}
	var adopted atomic.Int32
	_, ln := realDest(t, ddp, time.Second, &adopted)
	ep := wire.NewEndpoint(testKey(t), "a", 0, nil)
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(handoffFrame(t, ep, 8))
	if m, err := readMsg(t, ep, c, 2*time.Second); err == nil || !errors.Is(err, io.EOF) {
		t.Fatalf("answer %+v, %v; want the channel closed without a REFUSE", m, err)
	}
	if got := ddp.log(); got != "adopt,forget" {
		t.Errorf("destination data plane %q", got)
	}
}

// TestDrainFinishesInFlight: closing the channel listener lets a handoff
// in flight finish and answer (here a REFUSE after a slow, failing
// Adopt), and a HANDOFF arriving on an open channel connection meanwhile
// is refused "draining".
func TestDrainFinishesInFlight(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	inAdopt := make(chan struct{}, 1)
	ddp := &recorder{fail: map[string]error{"adopt": errors.New("table full")}, onCall: func(op string, _ Flow) {
		if op == "adopt" {
			inAdopt <- struct{}{}
			time.Sleep(150 * time.Millisecond)
		}
	}}
	var adopted atomic.Int32
	dest, ln := realDest(t, ddp, time.Second, &adopted)
	// A second channel connection, open before the drain.
	ep := wire.NewEndpoint(testKey(t), "c", 0, nil)
	idle, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	m := origin(t, ln.Addr().(*net.TCPAddr).Port, &recorder{}, time.Second)
	client, server, request := peeked(t, ns)
	moved := make(chan error, 1)
	go func() {
		_, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
		moved <- err
	}()
	<-inAdopt
	ln.Close()
	dest.Drain()
	idle.Write(handoffFrame(t, ep, 9))
	if a, err := readMsg(t, ep, idle, time.Second); err != nil || a.Body.(*wire.Refuse).Cause != wire.CauseDraining {
		t.Fatalf("HANDOFF during the drain: %+v, %v; want REFUSE draining", a, err)
	}
	var re *RefusedError
	if err := <-moved; !errors.As(err, &re) || re.Cause != wire.CauseAdopt {
		t.Fatalf("the handoff in flight: %v; want its own answer (an adopt refusal), not a cut channel", err)
	}
	servesEndToEnd(t, client, server, request)
}

// TestDialBeforeFreeze: the channel connection is made before the client
// connection is frozen, so a slow dial (here a SYN dropped by a full
// accept queue) never leaves the client unanswered: its data is
// acknowledged while the origin dials.
func TestDialBeforeFreeze(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	// A listener with a full accept queue: its SYNs go unanswered.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	for range 2 {
		if c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 300*time.Millisecond); err == nil {
			defer c.Close()
		}
	}
	const timeout = 600 * time.Millisecond
	m := origin(t, port, &recorder{}, timeout)
	client, server, request := peeked(t, ns)
	go func() {
		time.Sleep(100 * time.Millisecond)
		client.Write([]byte("x"))
	}()
	acked := make(chan int, 1)
	go func() {
		time.Sleep(400 * time.Millisecond) // loopback RTO is 200 ms: a frozen server would have dropped a retransmission too
		acked <- outq(client)
	}()
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	var e *Error
	if !intact || !errors.As(err, &e) || e.Cause != CauseDial {
		t.Fatalf("Move: intact %v, %v; want intact after a dial failure", intact, err)
	}
	if n := <-acked; n != 0 {
		t.Errorf("the client had %d unacknowledged bytes while the origin dialled: the connection was frozen during the dial", n)
	}
	request = append(request, 'x')
	servesEndToEnd(t, client, server, request)
}

func outq(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	return n
}

// tcpSocketState is the state (hex, as /proc/net/tcp shows it: 01 is
// ESTABLISHED) of the IPv4 socket local↔remote in the calling thread's
// network namespace, "" if there is none. It reads a file, in process, so
// that asking takes no time out of the destination's budget.
func tcpSocketState(t *testing.T, local, remote netip.AddrPort) string {
	b, err := os.ReadFile("/proc/thread-self/net/tcp")
	if err != nil {
		t.Error(err)
		return ""
	}
	hex := func(ap netip.AddrPort) string {
		a := ap.Addr().As4() // printed as the host-order value of the network-order address
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[1] == hex(local) && f[2] == hex(remote) {
			return f[3]
		}
	}
	return ""
}
