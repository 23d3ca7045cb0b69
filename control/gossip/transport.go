package gossip

import (
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport wraps memberlist's NetTransport and counts packets,
// streams and bytes in both directions. It is the only place gossip
// touches sockets, so the counters see all gossip traffic.
type countingTransport struct {
	inner    *memberlist.NetTransport
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{} // closed when Shutdown begins: stop delivering
	stopped  chan struct{} // closed when the inner transport has stopped
	wg       sync.WaitGroup
	once     sync.Once
	c        *trafficCounters
}

type trafficCounters struct {
	packetsSent, packetsReceived atomic.Uint64
	bytesSent, bytesReceived     atomic.Uint64 // UDP and TCP payload bytes
	streamsDialed                atomic.Uint64
	streamsAccepted              atomic.Uint64
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

// newCountingTransport binds addr:port (port 0 = kernel's choice). With a
// kernel-chosen port, TCP and UDP must get the same number, which can race
// with other processes; retry a few times as memberlist itself does.
func newCountingTransport(addr string, port int, logger *log.Logger) (*countingTransport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var inner *memberlist.NetTransport
	var err error
	for range tries {
		inner, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{addr},
			BindPort:  port,
			Logger:    logger,
		})
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("gossip: bind %s: %w", net.JoinHostPort(addr, fmt.Sprint(port)), err)
	}
	t := &countingTransport{
		inner:    inner,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		c:        &trafficCounters{},
	}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

func (t *countingTransport) port() int { return t.inner.GetAutoBindPort() }

// The forwarders keep reading the inner channels until the inner transport
// has stopped: its listeners block on unbuffered sends, so a forwarder that
// quit early would hang NetTransport.Shutdown. After Shutdown begins they
// drop what they read.
func (t *countingTransport) forwardPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case p := <-in:
			t.c.packetsReceived.Add(1)
			t.c.bytesReceived.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.done:
			}
		case <-t.stopped:
			return
		}
	}
}

func (t *countingTransport) forwardStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case conn := <-in:
			t.c.streamsAccepted.Add(1)
			select {
			case t.streamCh <- &countingConn{Conn: conn, c: t.c}:
			case <-t.done:
				_ = conn.Close()
			}
		case <-t.stopped:
			return
		}
	}
}

func (t *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	ts, err := t.inner.WriteTo(b, addr)
	t.sent(len(b), err)
	return ts, err
}

func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	ts, err := t.inner.WriteToAddress(b, addr)
	t.sent(len(b), err)
	return ts, err
}

func (t *countingTransport) sent(n int, err error) {
	if err == nil {
		t.c.packetsSent.Add(1)
		t.c.bytesSent.Add(uint64(n))
	}
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *countingTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.dialed(t.inner.DialTimeout(addr, timeout))
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.dialed(t.inner.DialAddressTimeout(addr, timeout))
}

func (t *countingTransport) dialed(conn net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	t.c.streamsDialed.Add(1)
	return &countingConn{Conn: conn, c: t.c}, nil
}

// Shutdown stops the forwarders and closes the sockets. Safe to call twice.
func (t *countingTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		err = t.inner.Shutdown()
		close(t.stopped)
		t.wg.Wait()
	})
	return err
}

// countingConn counts stream bytes.
type countingConn struct {
	net.Conn
	c *trafficCounters
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.bytesReceived.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.bytesSent.Add(uint64(n))
	return n, err
}
