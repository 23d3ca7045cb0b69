package local

import (
	"bytes"
	"context"
	"errors"
	"net"
	"time"
)

// RelayAck is the byte the relay listener answers once it has accepted a
// relayed connection (a member, a valid PROXY line); the relaying side
// (handoff/front, and Forward here) sends nothing more before it.
const RelayAck = '+'

// ServeRelay serves the node-address relay listener until ln is closed
// (Shutdown closes it). Each connection comes from a cluster member
// (OriginOf of its source address) and starts with a PROXY v1 line naming
// the client; then it is TLS (first byte 0x16) or HTTP, served like a
// handed-off connection but marked X-Shoal-Relay: <member> and never
// forwarded again.
func (s *Server) ServeRelay(ln net.Listener) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return
	}
	s.relays[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.relays, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Too many open files and the like: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("relay listener", "addr", ln.Addr(), "err", err)
			}
			return
		}
		delay = 0
		if !s.track() {
			c.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			s.serveRelayed(c)
		}()
	}
}

// serveRelayed reads the PROXY line and the first byte, then serves.
func (s *Server) serveRelayed(c net.Conn) {
	from, ok := addrPort(c.RemoteAddr())
	var origin string
	if ok && s.c.OriginOf != nil {
		origin, ok = s.c.OriginOf(from.Addr())
	}
	if !ok || origin == "" {
		s.n.relayUnknown.Add(1)
		s.log.Debug("relay from an address that is not a cluster member: refused", "from", c.RemoteAddr())
		c.Close()
		return
	}
	stop := context.AfterFunc(s.ctx, func() { c.Close() }) // Shutdown aborts the wait
	defer stop()
	c.SetReadDeadline(time.Now().Add(ProxyLineTimeout))
	line, rest, err := readProxyLine(c)
	if err != nil {
		s.n.relayProxyErrors.Add(1)
		s.log.Debug("relay: bad PROXY line", "from", origin, "err", err)
		c.Close()
		return
	}
	client, vip, err := ParseProxyLine(line)
	if err != nil {
		s.n.relayProxyErrors.Add(1)
		s.log.Debug("relay: bad PROXY line", "from", origin, "err", err)
		c.Close()
		return
	}
	// Acknowledge: the relaying node splices only after this byte, so a
	// refusal above leaves it free to serve the client another way.
	c.SetWriteDeadline(time.Now().Add(ProxyLineTimeout))
	if _, err := c.Write([]byte{RelayAck}); err != nil {
		s.n.relayProxyErrors.Add(1)
		c.Close()
		return
	}
	c.SetWriteDeadline(time.Time{})
	w := &conn{Conn: c, meta: &connMeta{relay: origin}, buf: rest}
	if client.IsValid() { // else PROXY UNKNOWN: the socket's own addresses stand
		w.remote, w.local = net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(vip)
	}
	if len(rest) == 0 { // the first byte decides TLS or HTTP
		c.SetReadDeadline(time.Now().Add(s.c.HandshakeTimeout))
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			s.n.relayProxyErrors.Add(1)
			s.log.Debug("relay: nothing after the PROXY line", "from", origin, "err", err)
			c.Close()
			return
		}
		w.buf = b
	}
	c.SetReadDeadline(time.Time{})
	s.n.connsRelayed.Add(1)
	if !stop() { // Shutdown came first and closed c
		return
	}
	if w.buf[0] == 0x16 {
		s.serveTLS(w)
		return
	}
	s.give(w)
}

// readProxyLine reads up to and including the first "\r\n" (at most
// MaxProxyLine bytes) and returns the bytes read past it.
func readProxyLine(c net.Conn) (line, rest []byte, err error) {
	buf := make([]byte, 0, 256)
	for {
		if i := bytes.Index(buf, []byte("\r\n")); i >= 0 {
			return buf[:i+2], buf[i+2:], nil
		}
		if len(buf) >= MaxProxyLine {
			return nil, nil, errors.New("no CRLF within 107 bytes")
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			return nil, nil, err
		}
	}
}
