package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/lab"
)

// TestTCPDefenses: one three-node lab, each subtest a defect of issue 18
// that real clients or a blind attacker met, shown fixed end to end.
func TestTCPDefenses(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	tb, seed := tableOf(t, l)
	nextPort := 31000
	portOf := func(owner string) int { // a fresh client port in owner's buckets
		for ; ; nextPort++ {
			if owner == "" || ownerOfPort(tb, seed, nextPort) == owner {
				nextPort++
				return nextPort - 1
			}
		}
	}
	total := func(f func(api.Stats) uint64) (sum uint64, by map[string]uint64) {
		by = map[string]uint64{}
		for _, id := range l.NodeIDs() {
			by[id] = f(stats(t, id))
			sum += by[id]
		}
		return sum, by
	}

	t.Run("a stray ACK during an open handshake costs the client nothing", func(t *testing.T) {
		ports := []int{portOf(""), portOf(""), portOf("")}
		// Hold back the clients' ACKs and requests for ~3 s after their
		// SYN-ACK, so their handshakes stay open at the nodes.
		hold := fmt.Sprintf(`table inet shoal_hold {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp dport 80 tcp sport { %d, %d, %d } tcp flags & (syn|rst) == 0 drop
	}
}
`, ports[0], ports[1], ports[2])
		runStdin(t, "client", hold, "nft", "-f", "-")
		held := true
		release := func() {
			if held {
				held = false
				sh(t, "client", "nft", "delete", "table", "inet", "shoal_hold")
			}
		}
		defer release()
		withdrawn0, _ := total(func(s api.Stats) uint64 { return s.Total.OverlapWithdrawn })
		stray0, _ := total(func(s api.Stats) uint64 { return s.Total.StrayDropped })
		r := openRaw(t)
		r.watch()
		conns := make([]*net.TCPConn, len(ports))
		for i, p := range ports {
			c, _, err := dialFrom(p, 5*time.Second)
			if err != nil {
				t.Fatalf("port %d: %v", p, err)
			}
			defer c.Close()
			conns[i] = c
			if _, err := c.Write([]byte("GET /obj/1k HTTP/1.0\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		// One stray ACK per connection: its 4-tuple, random numbers (the
		// sequence number half the space away from the client's).
		for _, p := range ports {
			syn, err := r.tcpSeen(uint16(p), true, func(s *layers.TCP) bool { return s.SYN && !s.ACK }, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			stray := tcpToVIP(r.mac, clientAddr, uint16(p), 80, layers.TCP{ACK: true, Seq: syn.Seq + 1 + 1<<31, Ack: 0x5eed5eed})
			if err := r.send(stray); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Second)
		release()
		for i, c := range conns {
			c.SetDeadline(time.Now().Add(15 * time.Second))
			code, nd, n, err := response(c)
			if err != nil || code != 200 || n != 1024 {
				t.Errorf("port %d: code %d, %d bytes from %q, err %v", ports[i], code, n, nd, err)
			}
		}
		withdrawn, _ := total(func(s api.Stats) uint64 { return s.Total.OverlapWithdrawn })
		stray, _ := total(func(s api.Stats) uint64 { return s.Total.StrayDropped })
		t.Logf("stray ACKs dropped by the handshakes' owners: %d, flows withdrawn: %d", stray-stray0, withdrawn-withdrawn0)
		if withdrawn != withdrawn0 || stray-stray0 != uint64(len(ports)) {
			t.Errorf("%d flows withdrawn, %d strays dropped; want none withdrawn and %d dropped", withdrawn-withdrawn0, stray-stray0, len(ports))
		}
	})

	t.Run("a blind RST outside the window changes nothing", func(t *testing.T) {
		p := portOf("")
		owner := ownerOfPort(tb, seed, p)
		r := openRaw(t)
		r.watch()
		c, _, err := dialFrom(p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := "GET /obj/100m HTTP/1.0\r\n\r\n"
		c.Write([]byte(req))
		syn, err := r.tcpSeen(uint16(p), true, func(s *layers.TCP) bool { return s.SYN && !s.ACK }, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r.close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		br := bufio.NewReader(c)
		code, nd, err := readHead(br)
		if err != nil || code != 200 {
			t.Fatalf("code %d from %q: %v", code, nd, err)
		}
		if _, err := io.CopyN(io.Discard, br, 4<<20); err != nil {
			t.Fatal(err)
		}
		ign0 := stats(t, owner).Total.RSTIgnored
		// The client's next sequence number is ISN+1+len(request); this
		// RST is 2^30 past it, as the review's reproduction had it.
		r2 := openRaw(t)
		rst := tcpToVIP(r2.mac, clientAddr, uint16(p), 80, layers.TCP{RST: true, Seq: syn.Seq + 1 + uint32(len(req)) + 1<<30})
		if err := r2.send(rst); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if st := flowState(t, owner, p); st != "established" {
			t.Errorf("after the blind RST the flow is %q on %s, want established", st, owner)
		}
		if d := stats(t, owner).Total.RSTIgnored - ign0; d != 1 {
			t.Errorf("%s counted %d ignored RSTs, want 1", owner, d)
		}
		n, err := io.Copy(io.Discard, br)
		if err != nil || n+4<<20 != 100<<20 {
			t.Errorf("download after the RST: %d of %d bytes, err %v", n+4<<20, 100<<20, err)
		}
	})

	t.Run("ICMP fragmentation needed lowers the path MTU on the flow's node only", func(t *testing.T) {
		p := portOf("")
		owner := ownerOfPort(tb, seed, p)
		r := openRaw(t)
		r.watch()
		c, _, err := dialFrom(p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		synack, err := r.tcpSeen(uint16(p), false, func(s *layers.TCP) bool { return s.SYN && s.ACK }, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := total(func(s api.Stats) uint64 { return s.Total.ICMPToKernel })
		// A router on the way says the node's next 1500-byte segment
		// does not fit: the connection is idle, so the kernel's
		// snd_una = snd_nxt = ISN+1 is what the quote must carry.
		quoted := quotedSegment(uint16(p), synack.Seq+1)
		if err := r.send(icmpToVIP(r.mac, netip.MustParseAddr("198.18.0.1"), 3, 4, 1000, quoted)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		after, by := total(func(s api.Stats) uint64 { return s.Total.ICMPToKernel })
		if after-before != 1 {
			t.Errorf("%d ICMP errors delivered (%v), want 1 on %s", after-before, by, owner)
		}
		for _, id := range l.NodeIDs() {
			route := run(t, id, "ip", "route", "get", lab.ClientIP)
			lowered := strings.Contains(route, "mtu 1000")
			t.Logf("%s: %s", id, strings.Join(strings.Fields(route), " "))
			if lowered != (id == owner) {
				t.Errorf("%s (flow on %s): path MTU lowered %v", id, owner, lowered)
			}
		}
	})

	t.Run("ping to the VIP gets one answer per echo", func(t *testing.T) {
		owner := tb.OwnerOf(dataplane.Bucket(dataplane.ConnValue(seed, clientAddr, vipAddr, 0, 0)))
		before := map[string]uint64{}
		for _, id := range l.NodeIDs() {
			before[id] = stats(t, id).Total.ICMPToKernel
		}
		_, seqs, out := pingVIP(t, 10, "0.2")
		for s := 1; s <= 10; s++ {
			if seqs[s] != 1 {
				t.Errorf("echo %d answered %d times:\n%s", s, seqs[s], out)
			}
		}
		for _, id := range l.NodeIDs() {
			d := stats(t, id).Total.ICMPToKernel - before[id]
			want := uint64(0)
			if id == owner {
				want = 10
			}
			if d != want {
				t.Errorf("%s passed %d echoes to its kernel, want %d (echo bucket owner %s)", id, d, want, owner)
			}
		}
	})

	t.Run("a half-closed download lasting over 40 s completes", func(t *testing.T) {
		p := portOf("")
		c, err := dialSmallWindow(p)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /obj/100m HTTP/1.0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		// shutdown(SHUT_WR), as HTTP/1.0 tools and some proxies do: the
		// client's FIN reaches the node before the first byte of reply.
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// Read 100 MiB at 2.3 MB/s: 45 s, half again the closing timer.
		const size, rate = 100 << 20, 2.33e6
		start := time.Now()
		c.SetDeadline(start.Add(3 * time.Minute))
		paced := &pacedReader{r: c, rate: rate, start: start}
		code, nd, n, err := response(paced)
		took := time.Since(start)
		t.Logf("%d bytes from %s in %v after the client's FIN", n, nd, took.Round(time.Millisecond))
		if err != nil || code != 200 || n != size {
			t.Fatalf("half-closed download: code %d, %d of %d bytes, err %v", code, n, size, err)
		}
		if took < 40*time.Second {
			t.Errorf("the download took %v; the test needs over 40 s to outlast the closing timer", took)
		}
	})

	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
}

// flowState is the state node id's worker lists for the client's port.
func flowState(t *testing.T, id string, port int) string {
	t.Helper()
	var fs []dataplane.Flow
	if err := api.Get(lab.SocketPath(id), "/v1/flows?max=100000", &fs); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Client == fmt.Sprintf("%s:%d", lab.ClientIP, port) {
			return f.State
		}
	}
	return "none"
}

// quotedSegment is the start of a 1500-byte segment from VIP:80 to the
// client's port, as an ICMP error quotes it: the IPv4 header and the first
// 8 bytes of TCP (ports and sequence number).
func quotedSegment(port uint16, seq uint32) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: vipAddr.AsSlice(), DstIP: clientAddr.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, gopacket.Payload(make([]byte, 1480)))
	q := append([]byte(nil), buf.Bytes()[:20]...)
	return append(q, byte(0), 80, byte(port>>8), byte(port), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
}

// icmpToVIP builds an ICMP message from src to the VIP's cluster MAC.
func icmpToVIP(srcMAC net.HardwareAddr, src netip.Addr, typ, code uint8, rest uint16, payload []byte) []byte {
	clusterMAC, _ := net.ParseMAC(lab.ClusterMAC)
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: clusterMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: vipAddr.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: rest}
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp, gopacket.Payload(payload))
	return append([]byte(nil), buf.Bytes()...)
}

// dialSmallWindow connects from the client's port with a 64 KiB receive
// buffer, so that the sender follows the pace at which the test reads.
func dialSmallWindow(port int) (*net.TCPConn, error) {
	var c net.Conn
	err := lab.InNamespace("client", func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(lab.ClientIP), Port: port},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10) })
				if err != nil {
					return err
				}
				return serr
			}}
		var err error
		c, err = d.Dial("tcp", lab.VIP+":80")
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// pacedReader reads no faster than rate bytes per second since start.
type pacedReader struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     int64
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > 16<<10 {
		b = b[:16<<10]
	}
	if ahead := time.Duration(float64(p.n)/p.rate*float64(time.Second)) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

// sh runs argv in a lab namespace, failing the test on error.
func sh(t *testing.T, where string, argv ...string) { t.Helper(); run(t, where, argv...) }

// runStdin runs argv in a lab namespace with stdin.
func runStdin(t *testing.T, where, stdin string, argv ...string) {
	t.Helper()
	cmd := lab.Exec(t.Context(), where, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %v: %s", where, argv, err, out)
	}
}
