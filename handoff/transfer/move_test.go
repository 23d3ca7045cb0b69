package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// fakeDest is a destination node "b" on the test's loopback that opens
// each frame (HANDOFF, COMMIT) and answers what answer returns (nil:
// nothing, ever).
type fakeDest struct {
	ln       net.Listener
	ep       *wire.Endpoint
	accepted atomic.Int32
	frames   atomic.Int32
	handoffs atomic.Int32
}

// twoPhase answers a HANDOFF with READY and a COMMIT with final (nil:
// never answers the COMMIT).
func twoPhase(final wire.Body) func(wire.Message) wire.Body {
	return func(m wire.Message) wire.Body {
		if m.Type == wire.TypeHandoff {
			return &wire.Ready{RestoreMicros: 5}
		}
		return final
	}
}

func newFakeDest(t *testing.T, key wire.Key, answer func(wire.Message) wire.Body, after func(net.Conn)) *fakeDest {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDest{ln: ln, ep: wire.NewEndpoint(key, "b", 0, nil)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for {
					raw, err := wire.ReadFrame(c)
					if err != nil {
						return
					}
					d.frames.Add(1)
					m, err := d.ep.Open(raw)
					if err != nil {
						t.Errorf("fake destination: %v", err)
						return
					}
					if m.Type == wire.TypeHandoff {
						d.handoffs.Add(1)
					}
					body := answer(m)
					if body == nil {
						c.Read(make([]byte, 1)) // until the origin gives up and closes
						return
					}
					f, _ := d.ep.Seal(m.Sender, m.HandoffID, body)
					c.Write(f)
					if after != nil {
						if _, ready := body.(*wire.Ready); !ready {
							after(c)
						}
					}
				}
			}()
		}
	}()
	return d
}

func (d *fakeDest) port() int { return d.ln.Addr().(*net.TCPAddr).Port }

// peeked is a connection on namespace ns's loopback whose server end has
// a peeked request in its receive queue, as the front server leaves it.
func peeked(t *testing.T, ns string) (client, server *net.TCPConn, request []byte) {
	t.Helper()
	client, server = loopPair(t, ns)
	request = []byte("GET /app.cgi HTTP/1.1\r\nHost: shoal\r\n\r\n")
	if _, err := client.Write(request); err != nil {
		t.Fatal(err)
	}
	if h, _, err := (peek.Peeker{}).PeekHTTP(server); err != nil || h.Path != "/app.cgi" {
		t.Fatalf("peek: %+v, %v", h, err)
	}
	return client, server, request
}

// servesEndToEnd checks that the server end still holds the request and
// that both directions work.
func servesEndToEnd(t *testing.T, client, server *net.TCPConn, request []byte) {
	t.Helper()
	if got := readN(t, server, len(request)); !bytes.Equal(got, request) {
		t.Fatalf("server read %q, want the peeked request", got)
	}
	reply := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	if _, err := server.Write(reply); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, client, len(reply)); !bytes.Equal(got, reply) {
		t.Fatalf("client read %q", got)
	}
	more := []byte("GET /next HTTP/1.1\r\nHost: shoal\r\n\r\n")
	if _, err := client.Write(more); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, server, len(more)); !bytes.Equal(got, more) {
		t.Fatalf("server read %q after the thaw", got)
	}
}

func isOpen(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	return err == nil && rc.Control(func(uintptr) {}) == nil
}

func origin(t *testing.T, port int, dp DataPlane, timeout time.Duration) *Mover {
	m := New(Config{Self: "a", Key: testKey(t), Port: port, Timeout: timeout, DataPlane: dp,
		Peers: staticPeers{"b": netip.MustParseAddr("127.0.0.1")}, Log: quietLog(t)})
	t.Cleanup(func() { m.Close() })
	return m
}

// TestRefuseThaws: a REFUSE gives the connection back to the origin,
// which serves it end to end, the peeked request included.
func TestRefuseThaws(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	d := newFakeDest(t, testKey(t), func(wire.Message) wire.Body { return &wire.Refuse{Cause: wire.CauseBusy, Detail: "full"} }, nil)
	dp := &recorder{}
	m := origin(t, d.port(), dp, time.Second)
	client, server, request := peeked(t, ns)
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	var re *RefusedError
	if !intact || !errors.As(err, &re) || re.Cause != wire.CauseBusy {
		t.Fatalf("Move: intact %v, %v; want intact and a busy refusal", intact, err)
	}
	if dp.log() != "" {
		t.Errorf("data plane calls %q on a refused handoff, want none", dp.log())
	}
	if s := m.Stats(); s.Failures["refused:busy"] != 1 || len(s.Moves) != 0 {
		t.Errorf("stats %+v", s)
	}
	servesEndToEnd(t, client, server, request)
}

// TestNoAcceptLosesTheConnection: a destination that answers READY, takes
// the COMMIT and never answers costs that one connection: Move gives up
// after the timeout, closes the frozen socket silently (the client hears
// neither a FIN nor a reset) and says it is lost; it never withdraws the
// flow.
func TestNoAcceptLosesTheConnection(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	d := newFakeDest(t, testKey(t), twoPhase(nil), nil)
	dp := &recorder{}
	const timeout = 300 * time.Millisecond
	m := origin(t, d.port(), dp, timeout)
	client, server, _ := peeked(t, ns)
	t0 := time.Now()
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonSession)
	took := time.Since(t0)
	var e *Error
	if intact || !errors.As(err, &e) || e.Cause != CauseTimeout {
		t.Fatalf("Move: intact %v, %v; want lost after a timeout", intact, err)
	}
	if took < timeout || took > timeout+500*time.Millisecond {
		t.Errorf("Move returned after %v; the timeout is %v", took, timeout)
	}
	if isOpen(server) {
		t.Error("the frozen socket is still open")
	}
	if dp.log() != "" {
		t.Errorf("data plane calls %q, want none (the destination may own the flow)", dp.log())
	}
	client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := client.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("client read %d bytes, %v; want silence (no FIN, no reset)", n, err)
	}
	if s := m.Stats(); s.Failures[CauseTimeout] != 1 || d.frames.Load() != 2 {
		t.Errorf("stats %+v, %d frames sent; want one timeout after a HANDOFF and a COMMIT", s, d.frames.Load())
	}
}

// TestAcceptWithdrawsThenCloses: after an ACCEPT the origin withdraws the
// flow while its frozen socket still exists, then closes that socket, and
// counts the move and its latency. A second move reuses the pooled
// channel connection.
func TestAcceptWithdrawsThenCloses(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	d := newFakeDest(t, testKey(t), twoPhase(&wire.Accept{RestoreMicros: 7}), nil)
	dp := &recorder{}
	m := origin(t, d.port(), dp, time.Second)
	for i := range 2 {
		_, server, _ := peeked(t, ns)
		var openAtRelease bool
		var released Flow
		dp.onCall = func(op string, f Flow) { openAtRelease, released = isOpen(server), f }
		intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
		if intact || err != nil {
			t.Fatalf("Move %d: intact %v, %v; want moved", i, intact, err)
		}
		if !openAtRelease {
			t.Error("the frozen socket was closed before the data plane released the flow")
		}
		if isOpen(server) {
			t.Error("the frozen socket is still open after the move")
		}
		if want := netip.MustParseAddrPort(server.LocalAddr().String()); released.VIP != want {
			t.Errorf("released %+v, want VIP %v", released, want)
		}
	}
	if got := dp.log(); got != "release,release" {
		t.Errorf("data plane calls %q", got)
	}
	s := m.Stats()
	if s.Moves["group"] != 2 || s.Latency.Count != 2 || len(s.Failures) != 0 {
		t.Errorf("stats %+v", s)
	}
	checkOriginSteps(t, s, 2)
	// The fake destination's READY claims 5 µs of its own, which
	// origin_remote leaves out of origin_ready.
	if r, a := s.Steps[StepRemote].Sum, s.Steps[StepReady].Sum; r != a-10*time.Microsecond {
		t.Errorf("origin_remote %v, want origin_ready %v less 2 × 5 µs", r, a)
	}
	if n := d.accepted.Load(); n != 1 {
		t.Errorf("%d channel connections for two sequential moves, want 1 (pooled)", n)
	}
}

// checkOriginSteps: every origin step is timed once per move, and the
// steps from the freeze to the ACCEPT add up to the latency; the channel
// get before the freeze is outside it.
func checkOriginSteps(t *testing.T, s Stats, moves uint64) {
	t.Helper()
	var upToAccept time.Duration
	for _, step := range []string{StepChannel, StepFreeze, StepDump, StepSeal, StepWrite, StepReady, StepRemote, StepCommit, StepWithdraw, StepClose} {
		h := s.Steps[step]
		if h.Count != moves {
			t.Errorf("origin step %s counted %d times, want %d", step, h.Count, moves)
		}
		switch step {
		case StepFreeze, StepDump, StepSeal, StepWrite, StepReady, StepCommit:
			upToAccept += h.Sum
		}
	}
	if upToAccept != s.Latency.Sum {
		t.Errorf("origin steps from the freeze to the ACCEPT sum to %v, the latency to %v", upToAccept, s.Latency.Sum)
	}
	if r, a := s.Steps[StepRemote].Sum, s.Steps[StepReady].Sum; r > a {
		t.Errorf("origin_remote %v exceeds origin_ready %v, which it is a part of", r, a)
	}
}

// TestClosedPooledConnectionReplaced: an idle channel connection the
// destination closed is noticed before use and replaced by a fresh one;
// the move succeeds.
func TestClosedPooledConnectionReplaced(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	d := newFakeDest(t, testKey(t), twoPhase(&wire.Accept{}),
		func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }) // a reset after each answer
	m := origin(t, d.port(), &recorder{}, time.Second)
	for i := range 2 {
		_, server, _ := peeked(t, ns)
		if intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup); err != nil {
			t.Fatalf("Move %d: intact %v, %v", i, intact, err)
		}
		time.Sleep(50 * time.Millisecond) // let the reset arrive
	}
	if n := d.accepted.Load(); n != 2 || d.handoffs.Load() != 2 {
		t.Errorf("%d connections and %d HANDOFFs, want 2 and 2", n, d.handoffs.Load())
	}
}

// TestDialFailureThaws: no destination listening → the connection is
// thawed and intact.
func TestDialFailureThaws(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	m := origin(t, port, &recorder{}, time.Second)
	client, server, request := peeked(t, ns)
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	var e *Error
	if !intact || !errors.As(err, &e) || e.Cause != CauseDial {
		t.Fatalf("Move: intact %v, %v; want intact after a dial failure", intact, err)
	}
	servesEndToEnd(t, client, server, request)
}

// TestAdoptFailureRefused: the real destination restores the socket, its
// data plane fails to adopt the flow: it aborts the restored socket,
// forgets the flow and refuses; the origin thaws and serves. Then 50
// concurrent handoffs through one pool meet the same refusal and all come
// back intact.
func TestAdoptFailureRefused(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "o")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ddp := &recorder{fail: map[string]error{"adopt": errors.New("table full")}}
	dest := New(Config{Self: "b", Key: testKey(t), Timeout: time.Second, DataPlane: ddp, Log: quietLog(t)})
	served := make(chan error, 1)
	go func() {
		served <- dest.Serve(ln, func(c *net.TCPConn, _ string) { t.Error("adopted a refused connection"); c.Close() })
	}()
	t.Cleanup(func() { ln.Close(); <-served })
	m := origin(t, ln.Addr().(*net.TCPAddr).Port, &recorder{}, time.Second)

	client, server, request := peeked(t, ns)
	intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
	var re *RefusedError
	if !intact || !errors.As(err, &re) || re.Cause != wire.CauseAdopt {
		t.Fatalf("Move: intact %v, %v; want an adopt refusal", intact, err)
	}
	if got := ddp.log(); got != "adopt,forget" {
		t.Errorf("destination data plane calls %q, want adopt,forget", got)
	}
	servesEndToEnd(t, client, server, request)

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		client, server, request := peeked(t, ns)
		wg.Add(1)
		go func() {
			defer wg.Done()
			intact, err := m.Move(context.Background(), server, "b", wire.ReasonGroup)
			var re *RefusedError
			if !intact || !errors.As(err, &re) {
				errs <- fmt.Errorf("move %d: intact %v, %v", i, intact, err)
				return
			}
			server.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(request))
			if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, request) {
				errs <- fmt.Errorf("move %d: thawed socket read %q, %v", i, got, err)
			}
			_ = client
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := dest.Stats(); s.Failures[CauseAdopt] != n+1 {
		t.Errorf("destination stats %+v, want %d adopt failures", s, n+1)
	}
}
