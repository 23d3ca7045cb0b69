package front

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/relay"
)

// handle runs one connection from its accept to the moment it is given
// away or closed; serve is what is left to run in the caller's goroutine
// once the front has let go of the connection (serveLocal).
func (s *Server) handle(cn *conn, isTLS bool) (serve func()) {
	c := cn.c
	lc := s.n.listener(isTLS)
	req := Request{TLS: isTLS, Client: addrPort(c.RemoteAddr()), Server: addrPort(c.LocalAddr())}
	var err error
	if isTLS {
		var hello peek.ClientHello
		if hello, _, err = s.c.Peeker.PeekClientHello(c); err == nil {
			req.Host = strings.ToLower(hello.SNI)
			if s.c.SessionNode != nil {
				req.SessionNode = s.c.SessionNode(&hello)
			}
		}
	} else {
		var head peek.HTTPHead
		if head, _, err = s.c.Peeker.PeekHTTP(c); err == nil {
			req.Path, req.Host, req.Cookies = head.Path, hostOnly(head.Host), head.Cookies
		}
	}
	cn.phase.Store(int32(phaseOther))
	if err != nil {
		s.refuse(c, lc, isTLS, err)
		return nil
	}
	lc.complete.Add(1)

	d := Decision{Local: true}
	if s.c.Decide != nil {
		d = s.c.Decide(req)
	}
	switch {
	case d.NoMember:
		s.n.noMember.Add(1)
		return s.serveLocal(c, isTLS)
	case d.Local || d.Node == "" || d.Node == s.c.Self:
		s.n.local.Add(1)
		return s.serveLocal(c, isTLS)
	default:
		s.n.remote.add(d.Reason.String())
		return s.remote(cn, isTLS, req, d)
	}
}

// serveLocal gives c to Config.Local; serve is what the caller runs once
// it has let go of c (InlineLocal), or nil.
func (s *Server) serveLocal(c *net.TCPConn, isTLS bool) (serve func()) {
	switch l, inline := s.c.Local.(InlineLocal); {
	case isTLS:
		s.c.Local.ServeTLS(c, "")
	case inline:
		return l.TakeHTTP(c, "")
	default:
		s.c.Local.ServeHTTP(c, "")
	}
	return nil
}

// remote moves the connection to d.Node, or relays it there; when
// neither reaches d.Node, it tries the node Config.Alternate names once,
// and serves the connection here when nothing works (serve, as
// serveLocal's).
func (s *Server) remote(cn *conn, isTLS bool, req Request, d Decision) (serve func()) {
	c := cn.c
	for attempt := 0; ; attempt++ {
		done, lost := s.moveOrRelay(cn, d)
		if done || lost {
			return nil
		}
		if attempt > 0 || s.c.Alternate == nil || s.ctx.Err() != nil {
			break
		}
		alt, ok := s.c.Alternate(req, d.Node)
		if !ok || alt.Node == d.Node {
			break
		}
		if alt.Local {
			s.n.alternateLocal.Add(1)
			return s.serveLocal(c, isTLS)
		}
		s.n.alternate.Add(1)
		s.log.Info("front: destination unreachable; trying another member", "client", c.RemoteAddr(), "node", d.Node, "alternate", alt.Node)
		d = alt
	}
	if s.ctx.Err() != nil { // Shutdown cut it short
		c.Close()
		return nil
	}
	s.n.fallbackLocal.Add(1)
	return s.serveLocal(c, isTLS)
}

// moveOrRelay moves the connection to d.Node or relays it there. done: it
// did one; lost: the move failed after the destination may have taken the
// connection, which is closed.
func (s *Server) moveOrRelay(cn *conn, d Decision) (done, lost bool) {
	c := cn.c
	if s.c.Move != nil {
		cn.phase.Store(int32(phaseMove))
		intact, err := s.c.Move(s.ctx, c, d.Node, d.Reason)
		cn.phase.Store(int32(phaseOther))
		switch {
		case err == nil:
			s.n.moveOK.Add(1)
			return true, false
		case !intact:
			s.n.moveLost.Add(1)
			s.log.Warn("front: handoff failed; the connection is lost", "client", c.RemoteAddr(), "node", d.Node, "err", err)
			c.Close() // the mover has closed it already; this only makes sure
			return false, true
		}
		s.n.moveIntact.Add(1)
		s.log.Info("front: handoff failed; relaying", "client", c.RemoteAddr(), "node", d.Node, "err", err)
	}
	if s.ctx.Err() != nil {
		return false, false
	}
	return s.relay(c, d.Node), false
}

// relay dials node's relay listener and relays c there, and reports
// whether it could; when it could not, c is untouched.
func (s *Server) relay(c *net.TCPConn, node string) bool {
	if s.c.RelayAddr == nil {
		return false
	}
	addr, ok := s.c.RelayAddr(node)
	if !ok {
		s.log.Warn("front: no relay address; serving here", "node", node)
		return false
	}
	if s.c.Skip != nil && s.c.Skip(node) {
		s.n.relayDialFailed.Add(1)
		s.log.Info("front: not relaying to a node that failed lately", "node", node)
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.c.RelayDial)
	dialer := net.Dialer{}
	if s.c.Source.IsValid() {
		dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.c.Source, 0))
	}
	up, err := dialer.DialContext(ctx, "tcp", addr.String())
	cancel()
	if err == nil {
		// The relay listener answers RelayAck once it has taken the
		// PROXY line from a member; anything else (it refused us, it
		// is gone) leaves the client untouched for another try.
		up.SetDeadline(time.Now().Add(s.c.RelayDial))
		if _, err = up.Write(proxyLine(c)); err == nil {
			var ack [1]byte
			if _, err = io.ReadFull(up, ack[:]); err == nil && ack[0] != RelayAck {
				err = fmt.Errorf("relay answered %q, not the acknowledgement", ack[0])
			}
		}
		up.SetDeadline(time.Time{})
		if err != nil {
			up.Close()
		}
	}
	if err != nil {
		s.n.relayDialFailed.Add(1)
		s.log.Warn("front: relay failed to start", "node", node, "relay", addr, "err", err)
		return false
	}
	if _, err := relay.Relay(s.ctx, c, up.(*net.TCPConn), relay.Options{Idle: s.c.RelayIdle, Counters: &s.n.relay}); err != nil {
		s.log.Debug("front: relay ended", "node", node, "client", c.RemoteAddr(), "err", err)
	}
	return true
}

// proxyLine is the PROXY protocol v1 header naming c's client and the VIP
// it reached.
func proxyLine(c net.Conn) []byte {
	src, dst := addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	if !src.IsValid() || !dst.IsValid() || src.Addr().Is4() != dst.Addr().Is4() {
		return []byte("PROXY UNKNOWN\r\n")
	}
	family := "TCP4"
	if src.Addr().Is6() {
		family = "TCP6"
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", family, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

// refuse answers a head that was not read whole (HTTP only, and only for
// the verdicts that have a status), counts it, and closes gently.
func (s *Server) refuse(c *net.TCPConn, lc *listenerCounters, isTLS bool, err error) {
	if s.ctx.Err() != nil { // Shutdown closed it under the peek
		lc.refused.add("shutdown")
		c.Close()
		return
	}
	v, reason := peek.VerdictOf(err), peek.ReasonOf(err)
	lc.refused.add(v.String())
	lc.reasons.add(reason)
	s.log.Debug("front: head refused", "client", c.RemoteAddr(), "tls", isTLS, "err", err)
	if status := v.HTTPStatus(); !isTLS && status != 0 {
		c.SetWriteDeadline(time.Now().Add(s.c.Drain))
		if _, err := c.Write(response(status, reason, s.c.Self)); err == nil {
			lc.answered.add(strconv.Itoa(status))
		}
	}
	s.closeGently(c)
}

// closeGently closes c without a reset: it shuts the write half (FIN after
// anything written), discards what the client still sends until it closes
// its side, at most Drain and DrainBytes, then closes. Closing with unread
// bytes in the receive queue would send RST, which may destroy the
// response before the client reads it.
func (s *Server) closeGently(c *net.TCPConn) {
	defer c.Close()
	if c.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(s.c.Drain))
	io.CopyN(io.Discard, c, DrainBytes)
}

var statusText = map[int]string{
	400: "Bad Request",
	408: "Request Timeout",
	431: "Request Header Fields Too Large",
}

// response is the minimal answer to a refused head. The body names the
// status and the counter label (never the client's bytes).
func response(status int, reason, self string) []byte {
	text := statusText[status]
	body := fmt.Sprintf("%d %s (%s)\n", status, text, reason)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: %d\r\nX-Shoal-Node: %s\r\n\r\n%s", status, text, len(body), self, body)
}

// hostOnly is an HTTP Host for routing: without its port or brackets, one
// trailing dot removed, lowercased.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// addrPort is a TCP address as a netip.AddrPort, an IPv4-mapped address
// unmapped and any zone dropped; the zero value if a is not TCP.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
