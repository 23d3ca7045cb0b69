package tcprepair

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// moveInNS moves server's connection to a new socket in ns, as a handoff
// within one namespace: it freezes and dumps the connection, closes the
// frozen origin (silent in repair mode) and restores the state. The
// restored socket is not yet released.
func moveInNS(t *testing.T, ns string, server *net.TCPConn) (*Restored, wire.TCPState) {
	t.Helper()
	frozen, err := Freeze(server)
	if err != nil {
		t.Fatal(err)
	}
	st, err := frozen.Dump()
	if err != nil {
		t.Fatal(err)
	}
	local, remote := frozen.Local(), frozen.Remote()
	if err := frozen.Close(); err != nil {
		t.Fatal(err)
	}
	var r *Restored
	if err := inNS(ns, func() (err error) { r, err = Restore(local, remote, &st, Options{}); return }); err != nil {
		t.Fatal(err)
	}
	return r, st
}

// stream is a deterministic byte stream: stream(off, n) is bytes off..off+n.
func stream(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		x := uint64(off + i)
		b[i] = byte(x*0x9E3779B97F4A7C15>>56) ^ byte(x)
	}
	return b
}

func addrPort(a net.Addr) netip.AddrPort {
	return unmap(netip.MustParseAddrPort(a.String()))
}

func readFull(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// TestMoveOnLoopback moves the server end of a loopback connection to a
// new socket in the same namespace, with data queued both ways: bytes the
// server wrote but the client had not read (part of them never sent, as the
// client's window was full), and bytes the client wrote that the server
// had not read. After the move both directions carry on intact, and no
// reset is seen.
func TestMoveOnLoopback(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "lo")
	rsts := countRSTs(t, ns)
	client, server := acceptedPair(t, ns, "127.0.0.1:8080")
	// The client shrinks its receive buffer so the server's writes back up
	// into unsent data.
	client.SetReadBuffer(64 << 10)
	request := []byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\nPING\n")
	if _, err := client.Write(request); err != nil {
		t.Fatal(err)
	}
	const first = 3 << 20
	server.SetWriteDeadline(time.Now().Add(2 * time.Second)) // generous: a loaded machine may not run the writer for a while
	written, _ := server.Write(stream(0, first))             // blocks when everything is full; the deadline stops it
	for sockInt(t, server, unix.SIOCINQ) < len(request) {
		time.Sleep(time.Millisecond)
	}

	r, st := moveInNS(t, ns, server)
	if !bytes.Equal(st.RecvQueue, request) {
		t.Fatalf("dumped receive queue %q, want the unread request %q", st.RecvQueue, request)
	}
	if len(st.SendQueue) == 0 || st.Unsent == 0 || !bytes.Equal(st.SendQueue, stream(written-len(st.SendQueue), len(st.SendQueue))) {
		t.Fatalf("dumped send queue of %d bytes (%d unsent): want the tail of the %d written, some unsent", len(st.SendQueue), st.Unsent, written)
	}
	if !st.SACK || !st.Timestamps || !st.WindowScaling || st.MSS == 0 {
		t.Fatalf("options not dumped: %+v", st)
	}
	t.Logf("dumped: send queue %d bytes (%d unsent), receive queue %d, MSS %d, wscale %d/%d, window %+v",
		len(st.SendQueue), st.Unsent, len(st.RecvQueue), st.MSS, st.SndWscale, st.RcvWscale, st.Window)
	// The kernel holds what was restored: dump it again before release.
	again, err := dump(r.fd)
	if err != nil {
		t.Fatal(err)
	}
	sent := len(st.SendQueue) - int(st.Unsent)
	if again.SendSeq != st.SendSeq || again.RecvSeq != st.RecvSeq || !bytes.Equal(again.SendQueue, st.SendQueue[:sent]) ||
		!bytes.Equal(again.RecvQueue, st.RecvQueue) || again.MSS != st.MSS || again.SACK != st.SACK ||
		again.Timestamps != st.Timestamps || again.SndWscale != st.SndWscale || again.RcvWscale != st.RcvWscale || again.Window != st.Window {
		t.Fatalf("restored state differs:\n got %+v\nwant %+v", summary(again), summary(st))
	}
	if d := again.TSVal - st.TSVal; d > 1_000_000 {
		t.Fatalf("timestamp clock jumped by %d (from %d to %d)", d, st.TSVal, again.TSVal)
	}
	moved, err := r.Release(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()

	if got := readFull(t, moved, len(request)); !bytes.Equal(got, request) {
		t.Fatalf("the moved socket read %q, want %q", got, request)
	}
	const rest = 2 << 20
	go func() {
		moved.Write(stream(written, rest))
		moved.Write([]byte("server bye"))
	}()
	if got := readFull(t, client, written+rest); !bytes.Equal(got, stream(0, written+rest)) {
		t.Fatal("the client's stream differs from what the server wrote before and after the move")
	}
	if got := readFull(t, client, 10); string(got) != "server bye" {
		t.Fatalf("client read %q", got)
	}
	client.Write([]byte("client bye"))
	if got := readFull(t, moved, 10); string(got) != "client bye" {
		t.Fatalf("moved socket read %q", got)
	}
	if in, out := rsts(); in != 0 || out != 0 {
		t.Fatalf("resets on loopback: %d in, %d out", in, out)
	}
}

func summary(s wire.TCPState) wire.TCPState {
	s.SendQueue, s.RecvQueue = s.SendQueue[:min(len(s.SendQueue), 8)], s.RecvQueue[:min(len(s.RecvQueue), 8)]
	return s
}

// TestRestoreHighSequenceNumbers builds a connection from nothing: two
// restored sockets whose states mirror each other, with sequence numbers
// just below 2^32 one way and just below 2^31 the other, then moves 1 MiB
// each way across the wrap. setsockopt(TCP_QUEUE_SEQ) takes a C int:
// values above 2^31 must go in by their bits.
func TestRestoreHighSequenceNumbers(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "seq")
	rsts := countRSTs(t, ns)
	a := netip.MustParseAddrPort("127.0.0.1:41000")
	b := netip.MustParseAddrPort("127.0.0.1:42000")
	const seqA, seqB = 0xffffff00, 0x7ffffff0
	// Window scales differ by direction, so a swap of the two would show.
	state := func(snd, rcv uint32, ts uint32, sndScale, rcvScale uint8) wire.TCPState {
		return wire.TCPState{SendSeq: snd, RecvSeq: rcv, MSS: 1460, SACK: true, Timestamps: true, WindowScaling: true,
			SndWscale: sndScale, RcvWscale: rcvScale, TSVal: ts,
			Window: wire.Window{SndWl1: rcv, SndWnd: 65536, MaxWindow: 65536, RcvWnd: 65536, RcvWup: rcv}}
	}
	stA, stB := state(seqA, seqB, 0xfffffff0, 7, 9), state(seqB, seqA, 0x10, 9, 7)
	var ra, rb *Restored
	if err := inNS(ns, func() (err error) {
		if ra, err = Restore(a, b, &stA, Options{}); err != nil {
			return err
		}
		rb, err = Restore(b, a, &stB, Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		r    *Restored
		want *wire.TCPState
	}{{ra, &stA}, {rb, &stB}} {
		st, err := dump(c.r.fd)
		if err != nil {
			t.Fatal(err)
		}
		if st.SendSeq != c.want.SendSeq || st.RecvSeq != c.want.RecvSeq || st.SndWscale != c.want.SndWscale ||
			st.RcvWscale != c.want.RcvWscale || st.MSS != c.want.MSS || st.Window != c.want.Window {
			t.Fatalf("restored %+v, want %+v", st, *c.want)
		}
	}
	ca, err := ra.Release(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := rb.Release(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	const n = 1 << 20
	go ca.Write(stream(0, n))
	go cb.Write(stream(7, n))
	if got := readFull(t, cb, n); !bytes.Equal(got, stream(0, n)) {
		t.Fatal("a→b stream differs across the sequence wrap")
	}
	if got := readFull(t, ca, n); !bytes.Equal(got, stream(7, n)) {
		t.Fatal("b→a stream differs")
	}
	if in, out := rsts(); in != 0 || out != 0 {
		t.Fatalf("resets: %d in, %d out", in, out)
	}
}

// TestFreezeSilencesThenThaw: while frozen, the origin neither takes in nor
// acknowledges the peer's data (the peer's bytes stay unacknowledged in its
// send queue); Thaw resumes the connection where it was and the peer's
// retransmission delivers them.
func TestFreezeSilencesThenThaw(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "thaw")
	rsts := countRSTs(t, ns)
	client, server := acceptedPair(t, ns, "127.0.0.1:8080")
	frozen, err := Freeze(server)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("sent while the server was frozen")
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // more than loopback's minimum RTO: a retransmission too is dropped
	if q := sockInt(t, server, unix.SIOCINQ); q != 0 {
		t.Fatalf("the frozen socket took in %d bytes", q)
	}
	if q := sockInt(t, client, unix.SIOCOUTQ); q != len(msg) {
		t.Fatalf("client has %d unacknowledged bytes, want %d: the frozen socket acknowledged data", q, len(msg))
	}
	if err := frozen.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, server, len(msg)); !bytes.Equal(got, msg) {
		t.Fatalf("after thaw read %q", got)
	}
	server.Write([]byte("ok"))
	if got := readFull(t, client, 2); string(got) != "ok" {
		t.Fatalf("client read %q", got)
	}
	if in, out := rsts(); in != 0 || out != 0 {
		t.Fatalf("resets: %d in, %d out", in, out)
	}
}

// TestFrozenOriginSendsNothingNew: a frozen socket with data in flight,
// never-sent data behind it and an open window must send none of that
// data, or the client would hold bytes the dump calls never sent (the
// destination then drops the client's ACKs as acknowledging what it never
// sent, and the connection dies). The client announces a 1000-byte MSS,
// so the server's initial congestion window (10 segments) is well inside
// the client's 64 KiB window, and the client's ACKs are dropped while the
// server writes, so that data stays in flight; in repair mode the kernel's
// tail loss probe would send the next never-sent segment, and its RTO
// (200 ms on loopback) retransmits the first.
func TestFrozenOriginSendsNothingNew(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "tlp")
	ln := listen(t, ns, "127.0.0.1:8080")
	var c net.Conn
	if err := inNS(ns, func() (err error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, 1000) }); err != nil {
				return err
			}
			return serr
		}}
		c, err = d.Dial("tcp4", "127.0.0.1:8080")
		return
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.(*net.TCPConn)
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`table inet shoalrt_acks {
	chain out {
		type filter hook output priority 0;
		tcp sport %d tcp dport 8080 drop
	}
}`, addrPort(client.LocalAddr()).Port()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	// The write fits the send buffer, so it returns as the initial window
	// goes out, and the freeze comes before the loss probe (≥ 10 ms).
	if err := server.SetWriteBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(stream(0, 64<<10)); err != nil {
		t.Fatal(err)
	}
	frozen, err := Freeze(server)
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	st, err := frozen.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if sent := len(st.SendQueue) - int(st.Unsent); sent == 0 || st.Unsent == 0 || st.Window.SndWnd <= uint32(sent) {
		t.Fatalf("want data in flight, never-sent data and room in the window: %d sent, %d never sent, window %d", sent, st.Unsent, st.Window.SndWnd)
	}
	time.Sleep(500 * time.Millisecond)
	again, err := frozen.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if got, sent := tcpInfo(t, client).Bytes_received, sentByDump(&st, 64<<10); got > sent {
		t.Fatalf("the client received %d bytes from the frozen socket that the dump called never sent", got-sent)
	}
	if again.Window != st.Window {
		t.Errorf("Dump reported window %+v, then %+v: it must be the client's, as it was at the freeze", st.Window, again.Window)
	}
	t.Logf("frozen with %d bytes in flight, %d never sent, window %d: nothing new sent in 500 ms", len(st.SendQueue)-int(st.Unsent), st.Unsent, st.Window.SndWnd)
}

func TestDumpRefusesAClosingConnection(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "fin")
	client, server := acceptedPair(t, ns, "127.0.0.1:8080")
	client.CloseWrite()
	for tcpInfo(t, server).State == 1 {
		time.Sleep(time.Millisecond)
	}
	frozen, err := Freeze(server)
	if err != nil {
		t.Fatal(err)
	}
	_, err = frozen.Dump()
	var re *Error
	if !errors.As(err, &re) || re.Step != "TCP_INFO" || !strings.Contains(err.Error(), "only ESTABLISHED") {
		t.Fatalf("Dump of a CLOSE_WAIT socket: %v, want a TCP_INFO error naming the state", err)
	}
	if err := frozen.Thaw(); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreNamesAMissingAddress(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "bind")
	st := wire.TCPState{MSS: 1460, Window: wire.Window{SndWnd: 1000, MaxWindow: 1000, RcvWnd: 1000}}
	vip := netip.MustParseAddrPort("198.19.200.100:80")
	client := netip.MustParseAddrPort("198.19.200.10:40000")
	err := inNS(ns, func() error { _, err := Restore(vip, client, &st, Options{}); return err })
	if err == nil || !strings.Contains(err.Error(), "FreeBind") {
		t.Fatalf("restore on an address not here: %v, want a bind error that names the way out", err)
	}
}

// TestRestoredSilentUntilRelease: a restored socket takes in and
// acknowledges nothing the peer sends until Release (the peer's bytes stay
// unacknowledged in its send queue, retransmissions included), so a
// destination that aborts before Release leaves no trace the origin would
// contradict by thawing; after Release the peer's retransmission delivers
// them.
func TestRestoredSilentUntilRelease(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "silent")
	rsts := countRSTs(t, ns)
	client, server := acceptedPair(t, ns, "127.0.0.1:8080")
	r, _ := moveInNS(t, ns, server)
	msg := []byte("sent while the restored socket waited for its commit")
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // more than loopback's minimum RTO: a retransmission too is dropped
	if q := sockInt(t, client, unix.SIOCOUTQ); q != len(msg) {
		t.Fatalf("client has %d unacknowledged bytes, want %d: the restored socket acknowledged data before Release", q, len(msg))
	}
	moved, err := r.Release(time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	if got := readFull(t, moved, len(msg)); !bytes.Equal(got, msg) {
		t.Fatalf("after Release read %q", got)
	}
	moved.Write([]byte("ok"))
	if got := readFull(t, client, 2); string(got) != "ok" {
		t.Fatalf("client read %q", got)
	}
	if in, out := rsts(); in != 0 || out != 0 {
		t.Fatalf("resets: %d in, %d out", in, out)
	}
}

// TestReleasedSocketLetsTheServiceRebind: a restored socket that closes
// first sits in TIME_WAIT; a server restarted then must still bind its
// port (SO_REUSEADDR), as it can beside the TIME_WAIT of sockets its
// listener accepted. Leaving repair mode clears the socket's reuse, so
// Release sets it again.
func TestReleasedSocketLetsTheServiceRebind(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "rebind")
	client, server := acceptedPair(t, ns, "127.0.0.1:8081")
	client.Write([]byte("hello"))
	for sockInt(t, server, unix.SIOCINQ) < 5 {
		time.Sleep(time.Millisecond)
	}
	r, _ := moveInNS(t, ns, server)
	moved, err := r.Release(time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, moved, 5); string(got) != "hello" {
		t.Fatalf("moved socket read %q", got)
	}
	moved.Close() // the server closes first: its side goes to TIME_WAIT
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("client read %d bytes, %v; want EOF", n, err)
	}
	client.Close()
	time.Sleep(50 * time.Millisecond) // the last ACK reaches the server side
	again := listen(t, ns, "127.0.0.1:8081")
	again.Close()
}

// TestClosedWindowStaysClosedAfterRelease: the client's window is closed
// at the freeze and still closed at the release. The restored socket has
// the closed window and probes it as any sender; when the client reads
// 1.5 s later, its window update reaches the destination, which sends at
// once: the whole stream (650 KB) arrives, intact and without a reset,
// within 300 ms of the client's first read (2–25 ms here). It keeps what
// an earlier attempt at the 3 s pause (docs/handoff.md) broke: a restored
// window opened by one MSS sent a segment the client dropped, and the
// retransmission timeout that followed (congestion window one segment,
// backed off) held the stream for 1.5 s after the client read.
func TestClosedWindowStaysClosedAfterRelease(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "zwc")
	rsts := countRSTs(t, ns)
	client, server := acceptedPair(t, ns, "127.0.0.1:8080")
	client.SetReadBuffer(64 << 10)
	server.SetWriteBuffer(256 << 10) // a small stream, so that reading it takes no time
	server.SetWriteDeadline(time.Now().Add(time.Second))
	written, _ := server.Write(stream(0, 4<<20))
	r, st := moveInNS(t, ns, server)
	if room := int(st.Window.SndWnd) - (len(st.SendQueue) - int(st.Unsent)); room >= int(st.MSS) {
		t.Fatalf("the client's window was not closed at the freeze: %d bytes of room, MSS %d", room, st.MSS)
	}
	moved, err := r.Release(time.Now().Add(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	const more = 64 << 10
	go moved.Write(stream(written, more))
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	if got := readFull(t, client, written+more); !bytes.Equal(got, stream(0, written+more)) {
		t.Fatal("the client's stream differs from what the server wrote before and after the move")
	}
	took := time.Since(start)
	if in, out := rsts(); in != 0 || out != 0 {
		t.Fatalf("resets: %d in, %d out", in, out)
	}
	if took > 300*time.Millisecond {
		t.Fatalf("the stream took %v after the client began to read, want under 300 ms", took)
	}
	t.Logf("%d bytes in %v after the client began to read; the destination retransmitted %d segments",
		written+more, took.Round(time.Millisecond), tcpInfo(t, moved).Total_retrans)
}
