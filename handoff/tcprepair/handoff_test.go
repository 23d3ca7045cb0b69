package tcprepair

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
	"github.com/shoal-lb/shoal/internal/netns/netnstest"
)

// Addresses of the two-node test, in the benchmark range 198.18.0.0/15 but
// apart from the lab's 198.18.0.0/24.
const (
	clientIP  = "198.19.200.10"
	clientMAC = "02:00:c6:13:c8:0a"
	vip       = "198.19.200.100"
	vipMAC    = "02:00:c6:13:c8:64"
)

// twoNodes is a client and two servers, A and B, holding the same address
// and MAC, each on a veth into a bridge in its own namespace. Only one
// server's bridge port is up at a time: moving the path is taking one port
// down and the other up, which stands in for the data planes handing the
// flow over.
type twoNodes struct {
	br, client string
	node       [2]string // A, B
	rsts       map[string]func() (int, int)
	fins       [2]func() (int, int)
}

func newTwoNodes(t *testing.T) *twoNodes {
	t.Helper()
	n := &twoNodes{br: newNS(t, "br"), client: newNS(t, "c"), node: [2]string{newNS(t, "a"), newNS(t, "b")}, rsts: map[string]func() (int, int){}}
	run(t, "ip", "-n", n.br, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", n.br, "link", "set", "br0", "up")
	port := func(ns, name, ip, mac string) {
		run(t, "ip", "-n", n.br, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns)
		netnstest.InOrder(t, n.br, name)
		netnstest.InOrder(t, ns, "eth0")
		run(t, "ip", "-n", n.br, "link", "set", name, "master", "br0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
		run(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	port(n.client, "pc", clientIP, clientMAC)
	port(n.node[0], "p0", vip, vipMAC)
	port(n.node[1], "p1", vip, vipMAC)
	// Static neighbours: no ARP exchange can teach the bridge or the
	// client anything behind the test's back.
	run(t, "ip", "-n", n.client, "neigh", "replace", vip, "lladdr", vipMAC, "dev", "eth0", "nud", "permanent")
	for i, ns := range n.node {
		run(t, "ip", "-n", ns, "neigh", "replace", clientIP, "lladdr", clientMAC, "dev", "eth0", "nud", "permanent")
		n.rsts[ns] = countRSTs(t, ns)
		n.fins[i] = countFlag(t, ns, "fin")
	}
	n.rsts[n.client] = countRSTs(t, n.client)
	run(t, "ip", "-n", n.br, "link", "set", "pc", "up")
	n.pathTo(t, 0)
	return n
}

// pathTo makes node i the one the bridge reaches, and waits until the path
// really carries frames: the node's end reports carrier (its qdisc is
// active) and the bridge port forwards. The data plane's adoption of the
// flow will stand where this stands.
func (n *twoNodes) pathTo(t *testing.T, i int) {
	t.Helper()
	port := fmt.Sprintf("p%d", i)
	run(t, "ip", "-n", n.br, "link", "set", fmt.Sprintf("p%d", 1-i), "down")
	run(t, "ip", "-n", n.br, "link", "set", port, "up")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		node := run(t, "ip", "-n", n.node[i], "-o", "link", "show", "eth0")
		br := run(t, "ip", "-n", n.br, "-d", "-o", "link", "show", port)
		if strings.Contains(node, "state UP") && strings.Contains(br, "state forwarding") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("path to node %d not up after 5 s:\n%s\n%s", i, node, br)
		}
	}
}

func (n *twoNodes) assertNoResets(t *testing.T) {
	t.Helper()
	for ns, read := range n.rsts {
		if in, out := read(); in != 0 || out != 0 {
			t.Errorf("namespace %s: %d resets received, %d sent", ns, in, out)
		}
	}
}

// handoff moves conn from node `from` to node `to` the way the nodes will:
// freeze and dump on the origin, a HANDOFF frame, open and restore on the
// destination, an ACCEPT frame back. It returns the origin's frozen socket
// (still open: closing it before the path moves would let the origin's
// kernel answer the client's next segment with a reset), the restored
// socket (not yet released), the state, and the time from the freeze to
// the restored socket and to the ACCEPT opened at the origin.
func handoff(t *testing.T, n *twoNodes, eps [2]*wire.Endpoint, from, to int, conn *net.TCPConn, id uint64) (*Frozen, *Restored, wire.TCPState, time.Duration, time.Duration) {
	t.Helper()
	start := time.Now()
	frozen, err := Freeze(conn)
	if err != nil {
		t.Fatal(err)
	}
	st, err := frozen.Dump()
	if err != nil {
		t.Fatal(err)
	}
	dumped := time.Since(start)
	frame, err := eps[from].Seal(fmt.Sprint(to), id, &wire.Handoff{Client: frozen.Remote(), VIP: frozen.Local(), Reason: wire.ReasonGroup, Group: "test", State: st})
	if err != nil {
		t.Fatal(err)
	}
	// The destination's side.
	m, err := eps[to].Open(frame)
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Since(start)
	h := m.Body.(*wire.Handoff)
	var r *Restored
	var restoreOnly time.Duration
	if err := inNS(n.node[to], func() (err error) {
		t0 := time.Now()
		r, err = Restore(h.VIP, h.Client, &h.State, Options{})
		restoreOnly = time.Since(t0)
		return
	}); err != nil {
		t.Fatal(err)
	}
	restored := time.Since(start)
	t.Logf("handoff %d: %d+%d queued bytes; freeze+dump %v, seal+open %v, restore %v (+%v joining the namespace, a test artifact)",
		id, len(st.SendQueue), len(st.RecvQueue), dumped, opened-dumped, restoreOnly, restored-opened-restoreOnly)
	ack, err := eps[to].Seal(m.Sender, m.HandoffID, &wire.Accept{RestoreMicros: uint32(restored.Microseconds())})
	if err != nil {
		t.Fatal(err)
	}
	// The origin's side again.
	if a, err := eps[from].Open(ack); err != nil || a.HandoffID != id || a.Type != wire.TypeAccept {
		t.Fatalf("ACCEPT: %+v, %v", a, err)
	}
	return frozen, r, st, restored, time.Since(start)
}

// movePath moves the path to node `to`, then closes the origin's frozen
// socket: the order the origin's data plane and front server must keep.
func movePath(t *testing.T, n *twoNodes, to int, frozen *Frozen) {
	t.Helper()
	n.pathTo(t, to)
	if err := frozen.Close(); err != nil {
		t.Fatal(err)
	}
}

// sentByDump is how many bytes of the stream the origin had sent when it
// was dumped (st), given that it had accepted written bytes in all.
func sentByDump(st *wire.TCPState, written int) uint64 {
	return uint64(written) - uint64(st.Unsent)
}

// diagnose logs, for a failure, what each namespace's kernel thinks of the
// connection (ss -tinoe) and its non-zero TCP counters (nstat), which
// name the drops: PAWS, out of window, ACKs of unsent data and so on.
func (n *twoNodes) diagnose(t *testing.T) {
	t.Helper()
	for _, ns := range []string{n.client, n.node[0], n.node[1]} {
		ss, err := command("ip", "netns", "exec", ns, "ss", "-tinoe")
		if err != nil {
			t.Logf("ss in %s: %v", ns, err)
		}
		counters, err := command("ip", "netns", "exec", ns, "nstat", "-as")
		if err != nil {
			t.Logf("nstat in %s: %v", ns, err)
		}
		var tcp []string
		for _, l := range strings.Split(string(counters), "\n") {
			if strings.HasPrefix(l, "Tcp") {
				tcp = append(tcp, strings.Join(strings.Fields(l)[:2], " "))
			}
		}
		t.Logf("namespace %s:\n%s\ncounters: %s", ns, ss, strings.Join(tcp, ", "))
	}
}

// TestHandoffBetweenNodes moves a connection in the middle of a download
// from node A to node B, which holds the same address and MAC in another
// namespace, and finishes the download from B: the client reads one
// byte-identical stream and no reset crosses any namespace.
func TestHandoffBetweenNodes(t *testing.T) {
	needRoot(t)
	n := newTwoNodes(t)
	key, err := wire.DeriveKey([]byte("shoal test cluster key, 32 byte"))
	if err != nil {
		t.Fatal(err)
	}
	eps := [2]*wire.Endpoint{wire.NewEndpoint(key, "0", 0, nil), wire.NewEndpoint(key, "1", 0, nil)}
	lnA := listen(t, n.node[0], vip+":80")
	lnB := listen(t, n.node[1], vip+":80") // B's front server holds the port the restored socket binds too

	t.Run("mid-download", func(t *testing.T) {
		const total = 48 << 20
		// The whole stream up front: generating 45 MiB byte by byte under
		// -race takes seconds, which the client's longest wait measured
		// when B made its part after the move.
		data := stream(0, total)
		client := dial(t, n.client, vip+":80")
		connA, err := lnA.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		request := []byte("GET /obj/48m HTTP/1.1\r\nHost: " + vip + "\r\n\r\n")
		pipelined := []byte("GET /next HTTP/1.1\r\nHost: " + vip + "\r\n\r\n")
		if _, err := client.Write(append(slices.Clone(request), pipelined...)); err != nil {
			t.Fatal(err)
		}
		// A reads the request head the way the front server will: peeked,
		// so it is still in the receive queue when the connection moves.
		if h, _, err := (peek.Peeker{}).PeekHTTP(connA); err != nil || h.Path != "/obj/48m" {
			t.Fatalf("peek: %+v, %v", h, err)
		}

		// The client reads at about 64 MB/s, so A's writes back up and the
		// send queue holds unacknowledged and unsent data when A freezes.
		type result struct {
			n      int
			maxGap time.Duration
			gapAt  int // the stream offset the longest wait ended at
			err    error
		}
		done := make(chan result, 1)
		go func() {
			var res result
			buf := make([]byte, 64<<10)
			last := time.Now()
			client.SetReadDeadline(time.Now().Add(60 * time.Second))
			for {
				k, err := client.Read(buf)
				if k > 0 {
					if res.n+k > total {
						res.err = fmt.Errorf("%d bytes past the %d of the stream", res.n+k-total, total)
						break
					}
					if !bytes.Equal(buf[:k], data[res.n:res.n+k]) {
						res.err = fmt.Errorf("stream differs in the %d bytes at offset %d", k, res.n)
						break
					}
					res.n += k
					if gap := time.Since(last); gap > res.maxGap {
						res.maxGap, res.gapAt = gap, res.n-k
					}
					last = time.Now()
				}
				if err != nil {
					if !errors.Is(err, io.EOF) {
						res.err = err
					}
					break
				}
				time.Sleep(time.Millisecond)
			}
			done <- res
		}()

		var written atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := 0; off < total/2; off += 64 << 10 {
				select {
				case <-stop:
					return
				default:
				}
				k, err := connA.Write(data[off : off+64<<10])
				written.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
		time.Sleep(300 * time.Millisecond)
		close(stop)
		connA.SetWriteDeadline(time.Now()) // unblock a Write waiting for buffer space
		wg.Wait()
		connA.SetWriteDeadline(time.Time{})
		sentByA := int(written.Load())

		frozen, r, st, restored, accepted := handoff(t, n, eps, 0, 1, connA, 1)
		tp := time.Now()
		movePath(t, n, 1, frozen)
		pathMoved := time.Since(tp)
		// The origin no longer reaches the client: the client must hold no
		// byte the dump called never sent, or it acknowledges past B's
		// snd_nxt and B drops its every ACK.
		if got, dumped := tcpInfo(t, client).Bytes_received, sentByDump(&st, sentByA); got > dumped {
			t.Errorf("the client received %d bytes from the frozen origin after the dump (%d in all, %d sent by the dump)", got-dumped, got, dumped)
		}
		t0 := time.Now()
		connB, err := r.Release(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		released := time.Since(t0)
		defer connB.Close()

		if got := readFull(t, connB, len(request)+len(pipelined)); !bytes.Equal(got, append(slices.Clone(request), pipelined...)) {
			t.Fatalf("B read %q, want the request and the pipelined one", got)
		}
		// The client reads the rest in well under a second; a write still
		// blocked after 20 s is a stalled connection, and the diagnosis
		// comes before the client's keepalive (150 s) resets it.
		connB.SetWriteDeadline(time.Now().Add(20 * time.Second))
		if _, err := connB.Write(data[sentByA:]); err != nil {
			n.diagnose(t)
			t.Fatal(err)
		}
		connB.CloseWrite()
		res := <-done
		if res.err != nil {
			n.diagnose(t)
			t.Fatalf("client: %v after %d bytes", res.err, res.n)
		}
		if res.n != total {
			t.Fatalf("client read %d bytes, want %d", res.n, total)
		}
		n.assertNoResets(t)
		if _, out := n.fins[0](); out != 0 {
			t.Errorf("A sent %d FINs; its frozen socket must close silently", out)
		}
		if _, out := n.fins[1](); out == 0 {
			t.Error("B sent no FIN: the FIN counter does not count")
		}
		ti := tcpInfo(t, connB)
		t.Logf("moved after A wrote %d bytes: send queue %d (%d unsent), receive queue %d", sentByA, len(st.SendQueue), st.Unsent, len(st.RecvQueue))
		t.Logf("freeze→restored %v, freeze→ACCEPT at the origin %v, path moved in %v (the test's ip link swap), release %v; client's longest wait between reads %v, for the bytes at offset %d (the move: %d); B retransmitted %d segments",
			restored, accepted, pathMoved, released, res.maxGap, res.gapAt, sentByDump(&st, sentByA), ti.Total_retrans)
	})

	// The common case: the connection moves right after the peek, before
	// any reply, back and forth between A and B.
	t.Run("after-the-peek", func(t *testing.T) {
		const rounds = 20
		lns := [2]*net.TCPListener{lnA, lnB}
		var lat []time.Duration
		origin := 0
		n.pathTo(t, origin)
		for i := 0; i < rounds; i++ {
			client := dial(t, n.client, vip+":80")
			conn, err := lns[origin].AcceptTCP()
			if err != nil {
				t.Fatal(err)
			}
			request := fmt.Appendf(nil, "GET /app.cgi?round=%d HTTP/1.1\r\nHost: %s\r\nCookie: shoal_session=n%d\r\n\r\n", i, vip, 1-origin)
			client.Write(request)
			if _, _, err := (peek.Peeker{}).PeekHTTP(conn); err != nil {
				t.Fatal(err)
			}
			dest := 1 - origin
			frozen, r, st, restored, _ := handoff(t, n, eps, origin, dest, conn, uint64(100+i))
			if !bytes.Equal(st.RecvQueue, request) || len(st.SendQueue) != 0 {
				t.Fatalf("round %d: dumped %d/%d queued bytes", i, len(st.RecvQueue), len(st.SendQueue))
			}
			lat = append(lat, restored)
			movePath(t, n, dest, frozen)
			moved, err := r.Release(time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if got := readFull(t, moved, len(request)); !bytes.Equal(got, request) {
				t.Fatalf("round %d: destination read %q", i, got)
			}
			reply := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Shoal-Node: %d\r\nX-Shoal-Handoff: %d\r\n\r\nok", dest, origin)
			moved.Write(reply)
			if got := readFull(t, client, len(reply)); !bytes.Equal(got, reply) {
				t.Fatalf("round %d: client read %q", i, got)
			}
			moved.Close()
			client.Close()
			origin = dest
		}
		n.assertNoResets(t)
		slices.Sort(lat)
		t.Logf("freeze→restored over %d handoffs of a peeked request: min %v, p50 %v, p90 %v, max %v",
			rounds, lat[0], lat[rounds/2], lat[rounds*9/10], lat[rounds-1])
	})
}
