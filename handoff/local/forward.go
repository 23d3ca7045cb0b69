package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"time"
)

// forward reverse-proxies one request to another node's relay listener.
// Each client connection gets its own keep-alive connection to each node
// it forwards to, opened with a PROXY v1 line naming that client, so the
// far node sees the client's address and a relayed connection per client
// connection (closed when the client's closes).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, m *connMeta, node string, addr netip.AddrPort) {
	tr, err := m.transport(r, addr, s.c.Source)
	if err != nil {
		s.n.forwardErrors.Add(1)
		s.mark(w, m)
		s.log.Debug("forward", "node", node, "err", err)
		http.Error(w, fmt.Sprintf("shoal node %s: cannot forward to %s", s.c.Self, node), http.StatusBadGateway)
		return
	}
	p := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr.String()
			pr.Out.Host = pr.In.Host
			// X-Forwarded-* are the far node's to write (it knows the
			// client from the PROXY line); ReverseProxy dropped the client's.
			// The scheme it cannot see: the hop between nodes is plain.
			pr.Out.Header.Del(headerForwardedProto)
			if pr.In.TLS != nil {
				pr.Out.Header.Set(headerForwardedProto, "https")
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			s.n.forwardErrors.Add(1)
			s.mark(w, m)
			s.log.Debug("forward", "node", node, "addr", addr, "err", err)
			http.Error(w, fmt.Sprintf("shoal node %s: node %s unavailable", s.c.Self, node), http.StatusBadGateway)
		},
		ErrorLog: s.errLog,
	}
	p.ServeHTTP(w, r)
}

// transport returns the connection's keep-alive transport to addr.
func (m *connMeta) transport(r *http.Request, addr netip.AddrPort, source netip.Addr) (*http.Transport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tr := m.forward[addr]; tr != nil {
		return tr, nil
	}
	client, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil, fmt.Errorf("client address %q: %v", r.RemoteAddr, err)
	}
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	vip, ok := addrPort(la)
	if !ok {
		return nil, fmt.Errorf("local address %v unknown", la)
	}
	line, err := AppendProxyLine(nil, client, vip)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}
	if src := source; src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr.String())
			if err != nil {
				return nil, err
			}
			c.SetDeadline(time.Now().Add(upstreamDialTimeout))
			if _, err := c.Write(line); err != nil {
				c.Close()
				return nil, err
			}
			var ack [1]byte
			if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != RelayAck {
				c.Close()
				return nil, fmt.Errorf("relay listener %v did not accept the connection (%q, %v)", addr, ack[0], err)
			}
			c.SetDeadline(time.Time{})
			return c, nil
		},
		MaxIdleConnsPerHost:   1, // one client connection sends one request at a time
		IdleConnTimeout:       120 * time.Second,
		ResponseHeaderTimeout: upstreamHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	if m.forward == nil {
		m.forward = map[netip.AddrPort]*http.Transport{}
	}
	m.forward[addr] = tr
	return tr, nil
}
