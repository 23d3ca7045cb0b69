package node

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/shoal-lb/shoal/versions/table"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/handoff/front"
	"github.com/shoal-lb/shoal/handoff/local"
	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/route"
	"github.com/shoal-lb/shoal/handoff/tickets"
	"github.com/shoal-lb/shoal/handoff/transfer"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// serving is the node's web service: the front server (the reading
// module) on the VIP ports, the local server behind it, the handoff
// channel and the relay listener on the node address. It is what the
// server drill stops and starts.
type serving struct {
	n     *Node
	front *front.Server
	local *local.Server
	mover *transfer.Mover // nil: no cluster key, remote requests are relayed
	keys  *tickets.Keys   // nil: no TLS or no cluster key
	lns   []net.Listener
	wg    sync.WaitGroup
	// relayLn stays open until the local server stops; chanDone closes
	// when the channel's Serve has drained.
	relayLn  net.Listener
	chanDone chan struct{}
}

// startServing opens every listener first, so that a port in use fails
// the start with its config field named, and only then serves.
func (n *Node) startServing() (_ *serving, err error) {
	cfg := n.cfg
	s := &serving{n: n}
	defer func() {
		if err != nil {
			for _, ln := range s.lns {
				ln.Close()
			}
		}
	}()
	listen := func(field, addr string) (net.Listener, error) {
		var ln net.Listener
		var err error
		if field == "http.listen" || field == "http.tls.listen" {
			// The front's listeners: keepalive inherited, not set per accept.
			ln, err = front.Listen(context.Background(), addr)
		} else {
			ln, err = net.Listen("tcp", addr)
		}
		if err != nil {
			return nil, inputErr("%s: %v", field, err)
		}
		s.lns = append(s.lns, ln)
		return ln, nil
	}
	httpLn, err := listen("http.listen", cfg.HTTP.Listen)
	if err != nil {
		return nil, err
	}
	key, haveKey := cfg.HandoffKey()
	var tlsCfg *tls.Config
	var tlsLn net.Listener
	if cfg.HTTP.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLS.Cert, cfg.HTTP.TLS.Key)
		if err != nil {
			return nil, inputErr("http.tls: %v", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
		if haveKey {
			s.keys = tickets.NewKeys(key, time.Duration(cfg.HTTP.TLS.TicketRotationSec)*time.Second, nil)
			s.keys.Configure(tlsCfg, cfg.NodeID)
		}
		if tlsLn, err = listen("http.tls.listen", cfg.HTTP.TLS.Listen); err != nil {
			return nil, err
		}
	}
	nodeAddr := n.nodeAddr()
	vip, _ := netip.ParseAddr(cfg.Cluster.VIP)
	relayLn, err := listen("handoff.relay_port", net.JoinHostPort(nodeAddr.String(), strconv.Itoa(cfg.Handoff.RelayPort)))
	if err != nil {
		return nil, err
	}
	var chanLn net.Listener
	if haveKey && !cfg.Handoff.Disabled {
		if chanLn, err = listen("handoff.port", net.JoinHostPort(nodeAddr.String(), strconv.Itoa(cfg.Handoff.Port))); err != nil {
			return nil, err
		}
	}

	serves := map[string]bool{}
	for _, g := range cfg.MemberOf {
		serves[g] = true
	}
	for _, m := range cfg.Cluster.Members {
		if m.ID == cfg.NodeID {
			for _, g := range m.Groups {
				serves[g] = true
			}
		}
	}
	view := routeView{n}
	rcfg := route.Config{Self: cfg.NodeID, Groups: cfg.Groups, SessionCookie: cfg.HTTP.SessionCookie}
	s.local, err = local.New(local.Config{
		Self: cfg.NodeID, Content: cfg.HTTP.Content, Upstreams: cfg.HTTP.Upstreams,
		SessionCookie: cfg.HTTP.SessionCookie, TLS: tlsCfg,
		Group: func(r *http.Request) string {
			rq := requestOf(r)
			var cookies []string
			for _, c := range rq.Cookies {
				cookies = append(cookies, c.Name)
			}
			g, _ := groups.MatchHost(cfg.Groups, rq.Host, rq.Path, cookies)
			return g
		},
		Source: nodeAddr,
		Serves: func(g string) bool { return serves[g] },
		Forward: func(r *http.Request) (string, netip.AddrPort, bool) {
			if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); !ok || la.AddrPort().Addr().Unmap() != vip {
				return "", netip.AddrPort{}, false // the node's own address: served here, as the front does
			}
			d := route.Decide(rcfg, view, requestOf(r))
			if d.Local {
				return "", netip.AddrPort{}, false
			}
			a, ok := n.relayAddr(d.Node)
			return d.Node, a, ok
		},
		OriginOf:  n.memberAt,
		Published: n.versions.published,
		Log:       n.log,
	})
	if err != nil {
		return nil, inputErr("http: %v", err)
	}
	if chanLn != nil {
		wk, err := wire.DeriveKey(key)
		if err != nil {
			return nil, inputErr("gossip.key: %v", err)
		}
		s.mover = transfer.New(transfer.Config{
			Self: cfg.NodeID, Key: wk, Port: cfg.Handoff.Port,
			Timeout:   time.Duration(cfg.Handoff.TimeoutMS) * time.Millisecond,
			DataPlane: dataplaneFlows{n.runtime}, Peers: peers{n}, Log: n.log,
			IsMember: func(a netip.Addr) bool { _, ok := n.memberAt(a); return ok },
		})
	}
	fc := front.Config{
		Self: cfg.NodeID,
		Peeker: peek.Peeker{FirstBytes: time.Duration(cfg.Handoff.FirstBytesMS) * time.Millisecond,
			Head: time.Duration(cfg.Handoff.HeadMS) * time.Millisecond},
		Decide: func(r front.Request) front.Decision {
			if r.Server.Addr() != vip {
				// The node's own address (health checks, probes, the
				// operator): served here; only the VIP's connections
				// can move or be relayed.
				return front.Decision{Node: cfg.NodeID, Local: true}
			}
			return front.Decision(route.Decide(rcfg, view, routeRequest(r)))
		},
		Alternate: func(r front.Request, failed string) (front.Decision, bool) {
			d := route.Decide(rcfg, excluding{view, failed}, routeRequest(r))
			return front.Decision(d), d.Node != failed
		},
		Local:       s.local,
		RelayAddr:   n.relayAddr,
		Skip:        n.suspects.is,
		Source:      nodeAddr,
		SessionNode: sessionNode,
		Log:         n.log,
	}
	if s.mover != nil {
		fc.Move = func(ctx context.Context, c *net.TCPConn, dest string, reason wire.Reason) (bool, error) {
			intact, err := s.mover.Move(ctx, c, dest, reason)
			var te *transfer.Error
			if errors.As(err, &te) {
				switch te.Cause {
				case transfer.CauseDial, transfer.CauseNoReady, transfer.CauseTimeout, transfer.CauseLost:
					n.suspects.mark(dest, suspectFor)
				}
			}
			return intact, err
		}
	}
	s.front = front.New(fc)

	s.serve(func() error { return s.front.Serve(httpLn, false) })
	if tlsLn != nil {
		s.serve(func() error { return s.front.Serve(tlsLn, true) })
	}
	s.relayLn = relayLn
	s.serve(func() error { s.local.ServeRelay(relayLn); return nil })
	if chanLn != nil {
		s.chanDone = make(chan struct{})
		s.serve(func() error {
			defer close(s.chanDone)
			return s.mover.Serve(chanLn, func(c *net.TCPConn, origin string) {
				if tlsLn != nil && c.LocalAddr().(*net.TCPAddr).Port == tlsLn.Addr().(*net.TCPAddr).Port {
					s.local.ServeTLS(c, origin)
				} else {
					s.local.ServeHTTP(c, origin)
				}
			})
		})
	}
	return s, nil
}

func (s *serving) serve(f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			s.n.log.Error("serving", "err", err)
		}
	}()
}

// stop closes the listeners, lets connections and handoffs in flight
// finish for a moment, then closes them, in an order that lets each part
// finish what the next one needs: no new client or channel connection
// first; handoffs to this node in flight finish (new ones on open channel
// connections are refused "draining", so their origins relay); the
// front's connections, moves from this node included, finish; then the
// local server, which serves what the front and the channel gave it;
// last the mover's own goroutines.
func (s *serving) stop() {
	bounded := func(d time.Duration, f func(context.Context)) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		f(ctx)
	}
	for _, ln := range s.lns {
		if ln != s.relayLn {
			ln.Close()
		}
	}
	if s.mover != nil {
		s.mover.Drain()
		if s.chanDone != nil {
			<-s.chanDone // Serve waits for its handoffs in flight, bounded by handoff.timeout_ms
		}
	}
	bounded(2*time.Second, func(ctx context.Context) { s.front.Shutdown(ctx) })
	bounded(2*time.Second, func(ctx context.Context) { s.local.Shutdown(ctx) })
	s.relayLn.Close()
	if s.mover != nil {
		bounded(2*time.Second, func(ctx context.Context) { s.mover.Shutdown(ctx) })
	}
	s.wg.Wait()
}

// routeRequest is the decision's view of what the front peeked.
func routeRequest(r front.Request) route.Request {
	return route.Request{TLS: r.TLS, Path: r.Path, Host: r.Host, Cookies: r.Cookies, SessionNode: r.SessionNode, Client: r.Client}
}

// sessionNode is the node a TLS ClientHello's ticket names: the first
// pre_shared_key identity (TLS 1.3), else the session_ticket extension.
func sessionNode(h *peek.ClientHello) string {
	for _, id := range h.PSKIdentities {
		if node, ok := tickets.NodeOf(id); ok {
			return node
		}
		break
	}
	if node, ok := tickets.NodeOf(h.Ticket); ok {
		return node
	}
	return ""
}

// requestOf is the routing view of a later request on a connection, the
// way the front saw the first: the path cleaned as peek cleans it, the
// SNI as the host on TLS.
func requestOf(r *http.Request) route.Request {
	host := r.Host
	if r.TLS != nil && r.TLS.ServerName != "" {
		host = r.TLS.ServerName
	}
	p := path.Clean("/" + r.URL.Path)
	if strings.HasSuffix(r.URL.Path, "/") && p != "/" {
		p += "/"
	}
	rq := route.Request{Path: p, Host: groups.NormalizeHost(host)}
	for _, c := range r.Cookies() {
		rq.Cookies = append(rq.Cookies, peek.Cookie{Name: c.Name, Value: c.Value})
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		rq.Client = ap
	}
	return rq
}

// routeView answers route.Decide from the controller's current tables.
type routeView struct{ n *Node }

func (v routeView) Destination(g string, value uint32) (string, bool) {
	return v.n.Groups().Destination(g, value)
}
func (v routeView) Members(g string) []groups.Member { return v.n.Groups().Members(g) }

// Content makes decisions version-aware (route.Contents): the update table.
func (v routeView) Content(p string) (table.Publication, map[string]table.Row, bool) {
	return v.n.versions.table.Content(p)
}
func (v routeView) Healthy(id string) bool {
	return !v.n.suspects.is(id) && v.n.ctrl.Serving(id)
}

// suspectFor is how long a node that did not answer a handoff is passed
// over by decisions: long enough for gossip to declare a dead node dead,
// short enough that a slow one gets its share back soon.
const suspectFor = 5 * time.Second

// suspects are nodes passed over by decisions until a time.
type suspects struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (s *suspects) mark(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[string]time.Time{}
	}
	s.until[id] = time.Now().Add(d)
}

func (s *suspects) is(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.until[id]
	if ok && time.Now().After(t) {
		delete(s.until, id)
		return false
	}
	return ok
}

// excluding is a view in which one node is down: the decision again
// without a destination that could not be reached.
type excluding struct {
	routeView
	down string
}

func (v excluding) Healthy(id string) bool { return id != v.down && v.routeView.Healthy(id) }

// nodeAddr is this node's own address (interface.address without its
// prefix length; validated at start).
func (n *Node) nodeAddr() netip.Addr {
	p, _ := netip.ParsePrefix(n.cfg.Interface.Address)
	return p.Addr()
}

// peerAddr is a member's node address: from gossip, or the static
// member list.
func (n *Node) peerAddr(id string) (netip.Addr, bool) {
	if id == n.cfg.NodeID {
		return n.nodeAddr(), true
	}
	if n.gossip != nil {
		for _, m := range n.gossip.Members() {
			if m.Meta.NodeID == id {
				host, _, err := net.SplitHostPort(m.Addr)
				if err != nil {
					return netip.Addr{}, false
				}
				a, err := netip.ParseAddr(host)
				return a, err == nil
			}
		}
		return netip.Addr{}, false
	}
	for _, m := range n.cfg.Cluster.Members {
		if m.ID == id && m.Address != "" {
			a, err := netip.ParseAddr(m.Address)
			return a, err == nil
		}
	}
	return netip.Addr{}, false
}

// memberAt is the other member whose node address is a: who may relay
// to us (this node's own address is nobody: a local process could
// otherwise claim any client address in a PROXY line).
func (n *Node) memberAt(a netip.Addr) (string, bool) {
	a = a.Unmap()
	if a == n.nodeAddr() {
		return "", false
	}
	if n.gossip != nil {
		for _, m := range n.gossip.Members() {
			if host, _, err := net.SplitHostPort(m.Addr); err == nil && host == a.String() {
				return m.Meta.NodeID, true
			}
		}
		return "", false
	}
	for _, m := range n.cfg.Cluster.Members {
		if m.Address == a.String() {
			return m.ID, true
		}
	}
	return "", false
}

func (n *Node) relayAddr(id string) (netip.AddrPort, bool) {
	a, ok := n.peerAddr(id)
	if !ok || id == n.cfg.NodeID {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(n.cfg.Handoff.RelayPort)), true
}

type peers struct{ n *Node }

func (p peers) Addr(id string) (netip.Addr, bool) { return p.n.peerAddr(id) }

// dataplaneFlows gives the mover the workers' flow tables through the
// command ring.
type dataplaneFlows struct{ rt *dataplane.Runtime }

func tupleOf(f transfer.Flow) dataplane.Tuple { return dataplane.Tuple{Client: f.Client, VIP: f.VIP} }

func (d dataplaneFlows) Adopt(ctx context.Context, f transfer.Flow) error {
	return d.rt.Install(ctx, dataplane.FlowSpec{Tuple: tupleOf(f), State: dataplane.Established,
		ISN: f.ISN, ISNKnown: f.ISN != 0, ClientNext: f.ClientNext})
}

func (d dataplaneFlows) Release(ctx context.Context, f transfer.Flow) error {
	return d.rt.Withdraw(ctx, tupleOf(f))
}

func (d dataplaneFlows) Forget(ctx context.Context, f transfer.Flow) error {
	err := d.rt.Remove(ctx, tupleOf(f))
	if errors.Is(err, dataplane.ErrNoFlow) {
		return nil
	}
	return err
}

// handoffs is GET /v1/handoffs.
func (n *Node) handoffs() api.Handoffs {
	h := api.Handoffs{NodeID: n.cfg.NodeID}
	n.webMu.Lock()
	s := n.web
	n.webMu.Unlock()
	if s == nil {
		return h
	}
	h.Moves = s.mover != nil
	fs := s.front.Stats()
	h.Accepted = map[string]uint64{"http": fs.HTTP.Accepted, "https": fs.TLS.Accepted}
	h.Refused = map[string]uint64{}
	for _, m := range []map[string]uint64{fs.HTTP.Reasons, fs.TLS.Reasons} {
		for k, v := range m {
			h.Refused[k] += v
		}
	}
	remote := uint64(0)
	for _, v := range fs.Decisions.Remote {
		remote += v
	}
	h.Decisions = map[string]uint64{"local": fs.Decisions.Local, "remote": remote, "no_member": fs.Decisions.NoMember}
	h.Relayed, h.RelayFailed, h.RelayActive = fs.Relays.Started, fs.Relays.Failed+fs.Relays.DialFailed, fs.Relays.Active
	h.RelayBytesUp, h.RelayBytesDown = fs.Relays.ToUpstream, fs.Relays.ToClient
	h.FallbackLocal, h.Lost = fs.FallbackLocal, fs.Moves.FailedLost
	if s.mover != nil {
		ms := s.mover.Stats()
		h.HandedOff, h.Failures, h.Adopted, h.ChannelRefused = ms.Moves, ms.Failures, ms.Adopted, ms.Refusals
		h.Latency = latencyOf(ms.Latency)
		h.Steps = map[string]api.Latency{}
		for k, v := range ms.Steps {
			h.Steps[k] = latencyOf(v)
		}
	}
	lc := s.local.Counters()
	h.Served = map[string]uint64{
		"conns_local": lc.ConnsLocal, "conns_handed_off": lc.ConnsHandedOff, "conns_relayed": lc.ConnsRelayed,
		"requests": lc.Requests, "static": lc.Static, "static_cached": lc.StaticCached, "static_fast": lc.StaticFast, "upstream": lc.Upstream, "forwarded": lc.Forwarded,
		"status_4xx": lc.Status4xx, "status_5xx": lc.Status5xx, "upstream_errors": lc.UpstreamErrors,
		"forward_errors": lc.ForwardErrors, "relay_proxy_errors": lc.RelayProxyErrors, "relay_unknown": lc.RelayUnknown,
		"tls_failures": lc.TLSFailures,
	}
	h.Alternate, h.AlternateLocal = fs.Alternate, fs.AlternateLocal
	return h
}

func latencyOf(l transfer.Histogram) api.Latency {
	out := api.Latency{Count: l.Count, P50US: l.Quantile(0.5).Seconds() * 1e6, P99US: l.Quantile(0.99).Seconds() * 1e6,
		MaxUS: l.Max.Seconds() * 1e6}
	if l.Count > 0 {
		out.MeanUS = l.Sum.Seconds() * 1e6 / float64(l.Count)
	}
	var cum uint64
	for i, b := range l.Bounds {
		cum += l.Counts[i]
		out.Buckets = append(out.Buckets, api.LatencyBucket{LeUS: b.Seconds() * 1e6, Count: cum})
	}
	return out
}
