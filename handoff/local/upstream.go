package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"
)

// Upstream timeouts: connecting, and waiting for the response head once
// the request (its body included) is sent.
const (
	upstreamDialTimeout   = 5 * time.Second
	upstreamHeaderTimeout = 60 * time.Second
)

// upstream is one group's local upstream: a reverse proxy with its own
// keep-alive pool.
type upstream struct {
	group, addr string
	tr          *http.Transport
	proxy       *httputil.ReverseProxy
}

func newUpstream(s *Server, group, addr string) (*upstream, error) {
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("local: upstream %q of group %q: a unix socket path must be absolute", addr, group)
		}
		network, address = "unix", p
	} else if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return nil, fmt.Errorf("local: upstream %q of group %q is neither host:port nor unix:/path", addr, group)
	}
	d := &net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}
	u := &upstream{group: group, addr: addr}
	u.tr = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, address)
		},
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: upstreamHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	cookie, self := s.c.SessionCookie, s.c.Self
	u.proxy = &httputil.ReverseProxy{
		Transport: u.tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "upstream" // the transport dials addr whatever the URL says
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			// A request another node forwarded from a TLS connection
			// says so; only a relaying member is believed.
			if m, _ := pr.In.Context().Value(metaKey{}).(*connMeta); m != nil && m.relay != "" &&
				pr.In.Header.Get(headerForwardedProto) == "https" {
				pr.Out.Header.Set("X-Forwarded-Proto", "https")
			}
			pr.Out.Header.Del(headerForwardedProto)
			stripSessionPrefix(pr.Out.Header, cookie)
		},
		ModifyResponse: func(resp *http.Response) error {
			// The node's own headers are already on the response; an
			// upstream does not get to name nodes.
			resp.Header.Del(HeaderNode)
			resp.Header.Del(HeaderHandoff)
			resp.Header.Del(HeaderRelay)
			prefixSetCookie(resp.Header, cookie, self)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away: nothing to answer, not the upstream's fault
			}
			s.n.upstreamErrors.Add(1)
			s.log.Debug("upstream", "group", group, "upstream", addr, "err", err)
			http.Error(w, fmt.Sprintf("shoal node %s: upstream of group %s unavailable", self, group), http.StatusBadGateway)
		},
		ErrorLog: s.errLog,
	}
	return u, nil
}
