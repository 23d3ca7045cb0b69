package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/lab"
)

// rawPort is a packet socket on the client's veth: it sends hand-made
// frames (as a spoofing attacker or a router would) and sees every frame
// the client sends and receives. It is created in the client namespace
// and may be used from any goroutine.
type rawPort struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr

	mu      sync.Mutex
	frames  [][]byte // captured by watch
	done    chan struct{}
	stopped chan struct{} // closed when the watcher has returned
}

func openRaw(t *testing.T) *rawPort {
	t.Helper()
	r := &rawPort{}
	err := lab.InNamespace("client", func() error {
		// A large buffer: a flood's own frames come back to the socket.
		fd, ifi, err := packetSocket(lab.Interface)
		if err != nil {
			return err
		}
		r.fd, r.ifindex, r.mac = fd, ifi.Index, ifi.HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatalf("packet socket in the client namespace: %v", err)
	}
	t.Cleanup(r.close)
	return r
}

// packetSocket opens, in the calling goroutine's namespace, an AF_PACKET
// socket bound to dev for every protocol (ETH_P_ALL: only such sockets see
// what the host sends too), with an 8 MiB receive buffer and a 50 ms
// receive timeout that bounds how long a reader takes to notice a stop.
func packetSocket(dev string) (int, *net.Interface, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd, ifi, nil
}

func (r *rawPort) close() {
	if r.done != nil {
		close(r.done)
		r.done = nil
		<-r.stopped // within the watcher's receive timeout
	}
	if r.fd > 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

func (r *rawPort) send(frame []byte) error {
	return unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6})
}

// watch keeps, in the background, every SYN and SYN-ACK between the client
// and the VIP, until close.
func (r *rawPort) watch() {
	r.done, r.stopped = make(chan struct{}), make(chan struct{})
	done, stopped, fd := r.done, r.stopped, r.fd
	go func() {
		defer close(stopped)
		buf := make([]byte, 65536)
		vip := netip.MustParseAddr(lab.VIP).As4()
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
					continue
				}
				return
			}
			f := buf[:n]
			if n < 34 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
				continue
			}
			if [4]byte(f[26:30]) != vip && [4]byte(f[30:34]) != vip {
				continue
			}
			if n < 54 || f[23] != 6 || f[14] != 0x45 || f[14+20+13]&0x02 == 0 {
				continue
			}
			r.mu.Lock()
			r.frames = append(r.frames, append([]byte(nil), f...))
			r.mu.Unlock()
		}
	}()
}

// tcpSeen returns the first captured TCP segment between the client's
// port and the VIP (either way) whose flags match, as parsed layers.
func (r *rawPort) tcpSeen(port uint16, fromClient bool, flags func(*layers.TCP) bool, wait time.Duration) (*layers.TCP, error) {
	deadline := time.Now().Add(wait)
	for {
		r.mu.Lock()
		frames := r.frames
		r.mu.Unlock()
		for _, f := range frames {
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy)
			tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !ok {
				continue
			}
			cp := uint16(tcp.DstPort)
			if fromClient {
				cp = uint16(tcp.SrcPort)
			}
			if cp == port && (uint16(tcp.SrcPort) == 80) != fromClient && flags(tcp) {
				return tcp, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no matching segment of client port %d seen in %v", port, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sameISN counts the client ports (nil: every port seen) whose SYN-ACKs
// came from two stations (source MACs) with one sequence number.
func (r *rawPort) sameISN(ports []int) int {
	r.mu.Lock()
	frames := r.frames
	r.mu.Unlock()
	from := map[[2]uint32]map[string]bool{} // (port, ISN) -> source MACs
	for _, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || eth == nil || !tcp.SYN || !tcp.ACK || tcp.SrcPort != 80 {
			continue
		}
		k := [2]uint32{uint32(tcp.DstPort), tcp.Seq}
		if from[k] == nil {
			from[k] = map[string]bool{}
		}
		from[k][eth.SrcMAC.String()] = true
	}
	n := 0
	if ports == nil { // every port seen
		for _, macs := range from {
			if len(macs) > 1 {
				n++
			}
		}
		return n
	}
	for _, p := range ports {
		for k, macs := range from {
			if k[0] == uint32(p) && len(macs) > 1 {
				n++
				break
			}
		}
	}
	return n
}

var (
	clientAddr = netip.MustParseAddr(lab.ClientIP)
	vipAddr    = netip.MustParseAddr(lab.VIP)
)

// tcpToVIP builds a TCP/IPv4 frame to the VIP's cluster MAC.
func tcpToVIP(srcMAC net.HardwareAddr, src netip.Addr, sport, dport uint16, tcp layers.TCP) []byte {
	clusterMAC, _ := net.ParseMAC(lab.ClusterMAC)
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: clusterMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: vipAddr.AsSlice()}
	tcp.SrcPort, tcp.DstPort = layers.TCPPort(sport), layers.TCPPort(dport)
	if tcp.Window == 0 {
		tcp.Window = 1000
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, &tcp)
	return append([]byte(nil), buf.Bytes()...)
}

// dialFrom opens a TCP connection to VIP:80 from the client's address and
// the given port.
func dialFrom(port int, timeout time.Duration) (*net.TCPConn, time.Duration, error) {
	var c net.Conn
	var took time.Duration
	err := lab.InNamespace("client", func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(lab.ClientIP), Port: port}}
		start := time.Now()
		var err error
		c, err = d.DialContext(context.Background(), "tcp", lab.VIP+":80")
		took = time.Since(start)
		return err
	})
	if err != nil {
		return nil, took, err
	}
	return c.(*net.TCPConn), took, nil
}

// response reads an HTTP/1.0 response to its end and returns the status
// code, the X-Shoal-Node header and the body's length.
func response(r io.Reader) (code int, node string, n int64, err error) {
	br := bufio.NewReader(r)
	if code, node, err = readHead(br); err != nil {
		return code, node, 0, err
	}
	n, err = io.Copy(io.Discard, br)
	return code, node, n, err
}

// readHead reads an HTTP/1.x status line and headers.
func readHead(br *bufio.Reader) (code int, node string, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	fmt.Sscanf(line, "HTTP/1.%d %d", new(int), &code)
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return code, node, err
		}
		if h == "\r\n" {
			return code, node, nil
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "X-Shoal-Node") {
			node = strings.TrimSpace(v)
		}
	}
}
