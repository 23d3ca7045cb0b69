package local

import (
	"sync/atomic"

	"github.com/shoal-lb/shoal/handoff/objcache"
)

// Counters is a snapshot of what a Server did.
type Counters struct {
	// Connections by how they arrived: accepted here, handed off by
	// another node, relayed by another node (ServeRelay).
	ConnsLocal, ConnsHandedOff, ConnsRelayed uint64
	// Requests, and by outcome: served from Content, reverse-proxied to
	// a local upstream, forwarded to another node's relay listener.
	Requests, Static, Upstream, Forwarded uint64
	// StaticCached: the part of Static answered from the small-file cache
	// (handoff/objcache); Cache is that cache's own counters.
	StaticCached uint64
	// StaticFast: the part of StaticCached answered by the fast path
	// (fast.go) before net/http saw the connection.
	StaticFast uint64
	Cache      objcache.Counters
	// Responses with a 4xx or a 5xx status (whatever served them).
	Status4xx, Status5xx uint64
	// UpstreamErrors: a local upstream failed (502). ForwardErrors: the
	// node a request was forwarded to failed (502).
	UpstreamErrors, ForwardErrors uint64
	// RelayProxyErrors: a relayed connection without a valid PROXY v1 line
	// in time, or without a first byte after it. RelayUnknown: a relayed
	// connection from an address that is not a cluster member.
	RelayProxyErrors, RelayUnknown uint64
	// TLSFailures: TLS handshakes that failed or timed out (or TLS with no
	// certificate configured).
	TLSFailures uint64
	// Versioned: requests answered with a published version from here;
	// VersionUnavailable: published paths no node could serve (503).
	Versioned, VersionUnavailable uint64
}

type counters struct {
	connsLocal, connsHandedOff, connsRelayed atomic.Uint64
	requests, static, upstream, forwarded    atomic.Uint64
	cached, fast                             atomic.Uint64
	status4xx, status5xx                     atomic.Uint64
	upstreamErrors, forwardErrors            atomic.Uint64
	relayProxyErrors, relayUnknown           atomic.Uint64
	TLSFailures                              atomic.Uint64
	versioned, versionUnavailable            atomic.Uint64
}

func (n *counters) conns(origin, relay string) *atomic.Uint64 {
	switch {
	case relay != "":
		return &n.connsRelayed
	case origin != "":
		return &n.connsHandedOff
	}
	return &n.connsLocal
}

// Counters reads the counters; safe while the server runs.
func (s *Server) Counters() Counters {
	n := &s.n
	out := Counters{
		ConnsLocal: n.connsLocal.Load(), ConnsHandedOff: n.connsHandedOff.Load(), ConnsRelayed: n.connsRelayed.Load(),
		Requests: n.requests.Load(), Static: n.static.Load(), Upstream: n.upstream.Load(), Forwarded: n.forwarded.Load(),
		Status4xx: n.status4xx.Load(), Status5xx: n.status5xx.Load(),
		UpstreamErrors: n.upstreamErrors.Load(), ForwardErrors: n.forwardErrors.Load(),
		RelayProxyErrors: n.relayProxyErrors.Load(), RelayUnknown: n.relayUnknown.Load(),
		TLSFailures: n.TLSFailures.Load(),
		Versioned:   n.versioned.Load(), VersionUnavailable: n.versionUnavailable.Load(),
		StaticCached: n.cached.Load(), StaticFast: n.fast.Load(),
	}
	if s.cache != nil {
		out.Cache = s.cache.Counters()
	}
	return out
}
