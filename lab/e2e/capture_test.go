package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/lab"
)

// segCapture records, with the kernel's receive timestamps (one clock for
// every namespace), the TCP header of every segment to or from VIP:80 seen
// on a set of the lab's interfaces: the client's veth, and each node's veth
// (what its worker receives and sends) and tap (what its worker gives its
// kernel and what the kernel answers). It is the post-mortem of a reset:
// which kernel sent it, when, and what each node saw of that connection.
type segCapture struct {
	points []*capPoint
}

type capPoint struct {
	name    string // "client/eth0", "n1/shoal0"
	fd      int
	mu      sync.Mutex
	segs    []capSeg
	lost    int // frames the socket dropped (PACKET_STATISTICS)
	done    chan struct{}
	stopped chan struct{} // closed when run has returned
}

// capSeg is one TCP segment as one interface saw it.
type capSeg struct {
	at       time.Time
	point    string
	outgoing bool // sent by this namespace's host (PACKET_OUTGOING)
	src      net.HardwareAddr
	saddr    netip.Addr
	sport    uint16
	dport    uint16
	flags    uint8
	seq, ack uint32
	plen     int
}

// clientPort is the client's end of the segment's connection.
func (s capSeg) clientPort() uint16 {
	if s.sport == 80 && s.saddr == vipAddr {
		return s.dport
	}
	return s.sport
}

func (s capSeg) fromVIP() bool { return s.saddr == vipAddr }

func flagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{0x02, 'S'}, {0x01, 'F'}, {0x04, 'R'}, {0x08, 'P'}, {0x10, 'A'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	return b.String()
}

// startCapture opens a packet socket on each of the given "namespace/dev"
// points and records until the test ends.
func startCapture(t *testing.T, points ...string) *segCapture {
	t.Helper()
	c := &segCapture{}
	for _, p := range points {
		ns, dev, _ := strings.Cut(p, "/")
		cp := &capPoint{name: p, done: make(chan struct{}), stopped: make(chan struct{})}
		err := lab.InNamespace(ns, func() error {
			// ETH_P_ALL sockets see what the host sends, and they see a
			// node's veth before its ingress filter drops it.
			fd, _, err := packetSocket(dev)
			if err != nil {
				return err
			}
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
			cp.fd = fd
			return nil
		})
		if err != nil {
			c.stop()
			t.Fatalf("capture on %s: %v", p, err)
		}
		c.points = append(c.points, cp)
		go cp.run(cp.fd)
	}
	t.Cleanup(c.stop)
	return c
}

// run reads the socket until stop; the socket's receive timeout bounds
// how long stop waits.
func (cp *capPoint) run(fd int) {
	defer close(cp.stopped)
	buf := make([]byte, 128) // headers only: the socket truncates
	oob := make([]byte, 64)
	vip := vipAddr.As4()
	for {
		select {
		case <-cp.done:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		if n > len(buf) {
			n = len(buf)
		}
		f := buf[:n]
		if n < 14+20+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 || f[14]>>4 != 4 || f[23] != 6 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&15) * 4
		if ihl < 20 || len(ip) < ihl+20 {
			continue
		}
		tcp := ip[ihl:]
		src, dst := [4]byte(ip[12:16]), [4]byte(ip[16:20])
		sport, dport := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
		if !(src == vip && sport == 80) && !(dst == vip && dport == 80) {
			continue
		}
		s := capSeg{
			point: cp.name,
			src:   append(net.HardwareAddr(nil), f[6:12]...),
			saddr: netip.AddrFrom4(src),
			sport: sport, dport: dport,
			flags: tcp[13],
			seq:   binary.BigEndian.Uint32(tcp[4:8]),
			ack:   binary.BigEndian.Uint32(tcp[8:12]),
			plen:  int(binary.BigEndian.Uint16(ip[2:4])) - ihl - int(tcp[12]>>4)*4,
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			s.outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		s.at = time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
					nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
					s.at = time.Unix(sec, nsec)
				}
			}
		}
		cp.mu.Lock()
		cp.segs = append(cp.segs, s)
		cp.mu.Unlock()
	}
}

// stop ends the capture; it is idempotent.
func (c *segCapture) stop() {
	for _, cp := range c.points {
		if cp.fd < 0 {
			continue
		}
		close(cp.done)
		<-cp.stopped
		if st, err := unix.GetsockoptTpacketStats(cp.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			cp.lost += int(st.Drops)
		}
		unix.Close(cp.fd)
		cp.fd = -1
	}
}

// all returns every captured segment of the given client ports (nil: all),
// oldest first.
func (c *segCapture) all(ports map[uint16]bool) []capSeg {
	var out []capSeg
	for _, cp := range c.points {
		cp.mu.Lock()
		for _, s := range cp.segs {
			if ports == nil || ports[s.clientPort()] {
				out = append(out, s)
			}
		}
		cp.mu.Unlock()
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// resetPorts lists the client ports to which a RST from the VIP arrived at
// the client.
func (c *segCapture) resetPorts() []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, s := range c.all(nil) {
		if s.point == "client/"+lab.Interface && !s.outgoing && s.fromVIP() && s.flags&0x04 != 0 && !seen[s.clientPort()] {
			seen[s.clientPort()] = true
			out = append(out, s.clientPort())
		}
	}
	return out
}

// nodeOfMAC names the lab node whose MAC m is ("client", or m itself).
func nodeOfMAC(m net.HardwareAddr, nodes int) string {
	if m.String() == lab.ClientMAC {
		return "client"
	}
	for k := 1; k <= nodes; k++ {
		if m.String() == lab.NodeMAC(k) {
			return lab.NodeID(k)
		}
	}
	return m.String()
}

// report is the timeline of one connection at every capture point, with
// times relative to the client's first SYN, and what each interface's
// socket lost.
func (c *segCapture) report(port uint16, nodes int) string {
	segs := c.all(map[uint16]bool{port: true})
	var b strings.Builder
	var t0 time.Time
	for _, s := range segs {
		if s.point == "client/"+lab.Interface && s.flags&0x12 == 0x02 {
			t0 = s.at
			break
		}
	}
	if t0.IsZero() && len(segs) > 0 {
		t0 = segs[0].at
	}
	fmt.Fprintf(&b, "client port %d, %d segments captured, times from the client's SYN at %s\n", port, len(segs), t0.UTC().Format("15:04:05.000000"))
	b.WriteString("  (out: sent by that namespace's host, in: received; on nK/shoal0, in = from the worker to the kernel, out = from the kernel to the worker)\n")
	for _, s := range segs {
		dir := "c>v"
		if s.fromVIP() {
			dir = "v>c"
		}
		how := "in "
		if s.outgoing {
			how = "out"
		}
		fmt.Fprintf(&b, "  %+10.6fs %-12s %s %s from %-7s %-3s seq %10d ack %10d len %d\n",
			s.at.Sub(t0).Seconds(), s.point, how, dir, nodeOfMAC(s.src, nodes), flagString(s.flags), s.seq, s.ack, s.plen)
	}
	for _, cp := range c.points {
		if cp.lost > 0 {
			fmt.Fprintf(&b, "  (the capture on %s lost %d frames)\n", cp.name, cp.lost)
		}
	}
	return b.String()
}
