package transfer

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// channelDest serves the channel on the loopback with the given IsMember
// and idle timeout, and a data plane that must never be called.
func channelDest(t *testing.T, isMember func(netip.Addr) bool, idle, timeout time.Duration) (*Mover, string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dp := &recorder{onCall: func(op string, _ Flow) { t.Errorf("data plane %s called", op) }}
	dest := New(Config{Self: "b", Key: testKey(t), Timeout: timeout, DataPlane: dp, Log: quietLog(t), IsMember: isMember, IdleTimeout: idle})
	served := make(chan error, 1)
	go func() { served <- dest.Serve(ln, func(c *net.TCPConn, _ string) { t.Error("adopted"); c.Close() }) }()
	t.Cleanup(func() { ln.Close(); <-served })
	return dest, ln.Addr().String()
}

// closedWithin says whether the destination closes c (EOF or reset)
// within d, having sent nothing.
func closedWithin(c net.Conn, d time.Duration) (bool, time.Duration) {
	return closedSince(c, time.Now(), d)
}

// closedSince is closedWithin timed from start.
func closedSince(c net.Conn, start time.Time, d time.Duration) (bool, time.Duration) {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !errors.Is(err, os.ErrDeadlineExceeded), time.Since(start)
}

// TestChannelNonMemberClosed: a connection from an address that is not a
// member's node address is closed at once, before anything is read, and
// counted; a member's is served.
func TestChannelNonMemberClosed(t *testing.T) {
	dest, addr := channelDest(t, func(a netip.Addr) bool { return false }, time.Minute, time.Second)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if closed, took := closedWithin(c, 2*time.Second); !closed || took > 500*time.Millisecond {
		t.Fatalf("non-member connection: closed %v after %v; want closed at once", closed, took)
	}
	if s := dest.Stats(); s.Refusals["not_member"] != 1 {
		t.Fatalf("refusals %v, want one not_member", s.Refusals)
	}
}

// TestChannelConnectionCaps: at most MaxConnsPerPeer connections from one
// address; the next is closed at once and counted, and one closing makes
// room again.
func TestChannelConnectionCaps(t *testing.T) {
	dest, addr := channelDest(t, nil, time.Minute, time.Second)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range MaxConnsPerPeer {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	over, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if closed, _ := closedWithin(over, 2*time.Second); !closed {
		t.Fatalf("connection %d from one peer was not closed", MaxConnsPerPeer+1)
	}
	if closed, _ := closedWithin(conns[0], 100*time.Millisecond); closed {
		t.Fatal("a connection within the cap was closed")
	}
	if s := dest.Stats(); s.Refusals["too_many"] != 1 {
		t.Fatalf("refusals %v, want one too_many", s.Refusals)
	}
	conns[0].Close()
	time.Sleep(100 * time.Millisecond)
	again, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if closed, _ := closedWithin(again, 200*time.Millisecond); closed {
		t.Fatal("a connection after one closed was refused")
	}
}

// TestChannelDeadlines: an idle connection is closed after the idle
// timeout, uncounted; a frame started and stalled (in its header, or in
// its body) is closed within Timeout of its last progress and counted as
// "deadline".
func TestChannelDeadlines(t *testing.T) {
	const idle, timeout = 300 * time.Millisecond, 400 * time.Millisecond
	dest, addr := channelDest(t, nil, idle, timeout)
	dial := func() net.Conn {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Each wait is timed from before the step that starts the
	// destination's deadline (the dial, the write): the destination may
	// run before this goroutine is back from that step, so timing from
	// after it could see the deadline fire early.
	start := time.Now()
	c := dial()
	if closed, took := closedSince(c, start, 3*time.Second); !closed || took < idle || took > idle+300*time.Millisecond {
		t.Errorf("idle connection: closed %v after %v; the idle timeout is %v", closed, took, idle)
	}
	c = dial()
	start = time.Now()
	c.Write([]byte("SH")) // a header begun
	if closed, took := closedSince(c, start, 3*time.Second); !closed || took < timeout || took > timeout+300*time.Millisecond {
		t.Errorf("stalled header: closed %v after %v; want about %v", closed, took, timeout)
	}
	c = dial()
	h := make([]byte, 12)
	binary.BigEndian.PutUint32(h, wire.Magic)
	h[4], h[5] = wire.Version, byte(wire.TypeHandoff)
	binary.BigEndian.PutUint32(h[8:], 1000)
	start = time.Now()
	c.Write(append(h, make([]byte, 100)...)) // a header and part of the body
	if closed, took := closedSince(c, start, 3*time.Second); !closed || took < timeout || took > timeout+300*time.Millisecond {
		t.Errorf("stalled body: closed %v after %v; want about %v", closed, took, timeout)
	}
	if s := dest.Stats(); s.Refusals["deadline"] != 2 || len(s.Refusals) != 1 {
		t.Errorf("refusals %v, want two deadline", s.Refusals)
	}
}

// TestChannelMemoryBounded: 24 connections each claiming the largest
// frame and sending 256 KiB of it make the destination hold about what
// arrived, not 24 × 16.8 MB (the claimed length is unauthenticated until
// the MAC at the frame's end).
func TestChannelMemoryBounded(t *testing.T) {
	_, addr := channelDest(t, nil, time.Minute, 5*time.Second)
	const n, sent = 24, 256 << 10
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := make([]byte, 12)
	binary.BigEndian.PutUint32(h, wire.Magic)
	h[4], h[5] = wire.Version, byte(wire.TypeHandoff)
	binary.BigEndian.PutUint32(h[8:], uint32(wire.MaxFrame-12-32))
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(append(h, make([]byte, sent)...)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond) // let the destination read what was sent
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// Per connection: a 64 KiB read buffer, the frame buffer grown to
	// what arrived plus at most a chunk (≤ 512 KiB here), the goroutine.
	if limit := int64(n * (1 << 20)); grew > limit {
		t.Fatalf("heap grew by %d MiB for %d connections that sent %d KiB each; limit %d MiB", grew>>20, n, sent>>10, limit>>20)
	}
	t.Logf("heap grew by %.1f MiB for %d connections claiming %d bytes and sending %d KiB each", float64(grew)/(1<<20), n, wire.MaxFrame, sent>>10)
	for _, c := range conns {
		c.Close()
	}
}
