package gossip

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member states. Members lists only alive members: memberlist raises no
// event when it merely suspects a member, so a suspect stays listed (and
// keeps its buckets) until it is declared dead or refutes the suspicion.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Member is one cluster member as this node sees it.
type Member struct {
	Meta  Meta
	Addr  string // gossip address, ip:port
	State string // StateAlive for everything Members returns
}

// Errors a caller can test with errors.Is.
var (
	// ErrWrongKey: a seed answered but we could not understand each other's
	// encryption: a different cluster key, or encryption on one side only.
	ErrWrongKey = errors.New("gossip: seed refused us: wrong cluster key, or encryption enabled on only one side")
	// ErrNodeIDConflict: another member already uses this node's ID at
	// another address. memberlist keeps the first; this node is refused.
	ErrNodeIDConflict = errors.New("gossip: node ID already used by another member at another address")
	// ErrShutdown: the Gossip was shut down.
	ErrShutdown = errors.New("gossip: shut down")
)

// Gossip is a running membership agent: a memberlist instance, the local
// meta it advertises and the decoded view of its peers.
type Gossip struct {
	cfg   Config
	log   *slog.Logger
	ml    *memberlist.Memberlist
	tr    *countingTransport
	addr  string // advertised ip:port
	limit *rateLimiter

	updateMu sync.Mutex // serializes UpdateMeta
	metaMu   sync.RWMutex
	local    Meta
	localEnc []byte

	mu       sync.Mutex
	peers    map[string]*peerState // by node name, self excluded
	warned   map[string]Reason     // last problem logged per peer
	rejected map[Reason]uint64
	clamped  uint64

	conflicts     atomic.Uint64
	selfConflicts atomic.Uint64
	refused       atomic.Uint64
	joinFailures  atomic.Uint64

	subsMu sync.Mutex
	subs   []chan struct{}
	closed bool

	shutdown     atomic.Bool
	shutdownOnce sync.Once
	stop         chan struct{}
	wg           sync.WaitGroup
}

// Start binds the gossip port, starts memberlist advertising local, and
// joins cfg.Seeds if any. local.NodeID may be empty (cfg.NodeID is used);
// otherwise it must equal cfg.NodeID.
//
// A seed that refuses us (ErrWrongKey) or an ID already in use
// (ErrNodeIDConflict) is a misconfiguration: Start fails. Seeds that are
// merely unreachable are not: the node runs alone and retries every
// RejoinInterval until it sees a peer.
func Start(cfg Config, local Meta) (*Gossip, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ip := net.ParseIP(cfg.BindAddr); ip.IsUnspecified() {
		return nil, fmt.Errorf("gossip config: BindAddr must be this node's IP, not %s", cfg.BindAddr)
	}
	local, enc, err := encodeLocal(cfg.NodeID, local)
	if err != nil {
		return nil, err
	}
	g := &Gossip{
		cfg:      cfg,
		log:      cfg.Logger,
		limit:    newRateLimiter(cfg.RefusedLogInterval),
		local:    local,
		localEnc: enc,
		peers:    make(map[string]*peerState),
		warned:   make(map[string]Reason),
		rejected: make(map[Reason]uint64),
		stop:     make(chan struct{}),
	}
	filter := &logFilter{log: g.log, limit: g.limit, onRefused: func() { g.refused.Add(1) }}
	mlLog := log.New(filter, "", 0)

	port := cfg.BindPort
	if port == EphemeralPort {
		port = 0
	}
	g.tr, err = newCountingTransport(cfg.BindAddr, port, mlLog)
	if err != nil {
		return nil, err
	}
	mc := cfg.memberlistConfig()
	mc.Transport = g.tr
	mc.BindPort = g.tr.port()
	mc.AdvertisePort = g.tr.port()
	mc.Logger = mlLog
	d := delegate{g: g}
	mc.Delegate, mc.Events, mc.Conflict = d, d, d
	g.addr = net.JoinHostPort(cfg.BindAddr, strconv.Itoa(g.tr.port()))

	g.ml, err = memberlist.Create(mc)
	if err != nil {
		_ = g.tr.Shutdown()
		return nil, fmt.Errorf("gossip: start memberlist on %s: %w", g.addr, err)
	}
	g.log.Info("gossip: started", "node_id", cfg.NodeID, "addr", g.addr,
		"encrypted", len(cfg.Key) > 0, "probe_interval", cfg.ProbeInterval)

	if len(cfg.Seeds) > 0 {
		if _, err := g.Join(cfg.Seeds); err != nil {
			if errors.Is(err, ErrWrongKey) || errors.Is(err, ErrNodeIDConflict) {
				_ = g.Shutdown()
				return nil, err
			}
			g.log.Warn("gossip: no seed reachable yet; running alone and retrying",
				"seeds", cfg.Seeds, "retry_every", cfg.RejoinInterval, "err", err)
		}
	}
	if cfg.RejoinInterval > 0 && len(cfg.Seeds) > 0 {
		g.wg.Add(1)
		go g.rejoinLoop()
	}
	return g, nil
}

// encodeLocal checks and encodes the local meta, returning it as peers
// will decode it.
func encodeLocal(nodeID string, m Meta) (Meta, []byte, error) {
	if m.NodeID == "" {
		m.NodeID = nodeID
	}
	if m.NodeID != nodeID {
		return Meta{}, nil, fmt.Errorf("gossip: meta NodeID %q differs from Config.NodeID %q", m.NodeID, nodeID)
	}
	enc, err := EncodeMeta(m)
	if err != nil {
		return Meta{}, nil, err
	}
	dec, err := DecodeMeta(enc)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("gossip: local meta does not round-trip: %w", err)
	}
	return dec, enc, nil
}

// LocalAddr returns the advertised gossip address, ip:port; other nodes use
// it as a seed.
func (g *Gossip) LocalAddr() string { return g.addr }

// LocalMeta returns the meta this node advertises.
func (g *Gossip) LocalMeta() Meta {
	g.metaMu.RLock()
	defer g.metaMu.RUnlock()
	return cloneMeta(g.local)
}

// Join contacts the seeds (host:port; this node's own address is skipped)
// and merges their view. It returns how many seeds answered. It is safe to
// call again to retry; it fails with ErrWrongKey if seeds answered but
// could not decrypt us (or we them), and ErrNodeIDConflict if a seed
// already knows another member with this node's ID. An empty list after
// skipping self is not an error: this node starts a cluster.
func (g *Gossip) Join(seeds []string) (int, error) {
	if g.shutdown.Load() {
		return 0, ErrShutdown
	}
	seeds = g.skipSelf(seeds)
	if len(seeds) == 0 {
		return 0, nil
	}
	before := g.selfConflicts.Load()
	n, err := g.ml.Join(seeds)
	if g.selfConflicts.Load() != before {
		g.joinFailures.Add(1)
		return n, fmt.Errorf("%w: node ID %q, seeds %v", ErrNodeIDConflict, g.cfg.NodeID, seeds)
	}
	if err != nil {
		g.joinFailures.Add(1)
		detail := flatten(err)
		if containsAny(strings.ToLower(detail), refusalMarkers) {
			return n, fmt.Errorf("%w: seeds %v: %s", ErrWrongKey, seeds, detail)
		}
		return n, fmt.Errorf("gossip: join %v: no seed answered: %s", seeds, detail)
	}
	return n, nil
}

// flatten turns memberlist's multi-line multierror text into one line.
func flatten(err error) string {
	var parts []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line == "" || strings.HasSuffix(line, "occurred:") {
			continue
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

// skipSelf drops seeds that are this node's advertised address.
func (g *Gossip) skipSelf(seeds []string) []string {
	selfHost, selfPort, _ := net.SplitHostPort(g.addr)
	selfIP := net.ParseIP(selfHost)
	out := make([]string, 0, len(seeds))
	for _, s := range seeds {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if h, p, err := net.SplitHostPort(s); err == nil && p == selfPort {
			if ip := net.ParseIP(h); ip != nil && ip.Equal(selfIP) {
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

func (g *Gossip) rejoinLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if g.ml.NumMembers() > 1 {
			continue
		}
		if n, err := g.Join(g.cfg.Seeds); err != nil {
			g.log.Debug("gossip: rejoin failed", "seeds", g.cfg.Seeds, "err", err)
		} else if n > 0 {
			g.log.Info("gossip: joined", "seeds", g.cfg.Seeds, "answered", n)
		}
	}
}

// UpdateMeta replaces the local meta and broadcasts it. It returns once the
// broadcast has left or after Config.UpdateTimeout; on timeout the meta is
// still in effect locally and reaches peers by gossip or push/pull.
func (g *Gossip) UpdateMeta(m Meta) error {
	if g.shutdown.Load() {
		return ErrShutdown
	}
	g.updateMu.Lock()
	defer g.updateMu.Unlock()
	dec, enc, err := encodeLocal(g.cfg.NodeID, m)
	if err != nil {
		return err
	}
	g.metaMu.Lock()
	g.local, g.localEnc = dec, enc
	g.metaMu.Unlock()
	g.notify()
	if err := g.ml.UpdateNode(g.cfg.UpdateTimeout); err != nil {
		return fmt.Errorf("gossip: meta updated locally, broadcast not confirmed within %v: %w", g.cfg.UpdateTimeout, err)
	}
	return nil
}

// Members returns the local node and every alive peer whose meta decoded,
// sorted by NodeID. Peers with a rejected meta are left out (see Stats);
// peers with out-of-range values appear with the values Sanitize clamped.
// The result is a copy the caller owns.
func (g *Gossip) Members() []Member {
	self := Member{Meta: g.LocalMeta(), Addr: g.addr, State: StateAlive}
	g.mu.Lock()
	out := make([]Member, 0, len(g.peers)+1)
	out = append(out, self)
	for _, p := range g.peers {
		if p.ok {
			out = append(out, Member{Meta: cloneMeta(p.meta), Addr: p.addr, State: StateAlive})
		}
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Meta.NodeID, b.Meta.NodeID) })
	return out
}

func cloneMeta(m Meta) Meta {
	m.Groups = slices.Clone(m.Groups)
	return m
}

// Leave announces a graceful departure and waits up to timeout for the
// announcement to leave. Peers drop this node at once instead of after
// failure detection. The caller should have set capacity to zero (and let
// tables move) first, then call Shutdown.
func (g *Gossip) Leave(timeout time.Duration) error {
	if g.shutdown.Load() {
		return ErrShutdown
	}
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.log.Info("gossip: left the cluster", "node_id", g.cfg.NodeID)
	return nil
}

// Shutdown stops gossip without announcing a departure (peers detect it as
// a failure unless Leave was called first) and closes Subscribe channels.
// It is safe to call more than once.
func (g *Gossip) Shutdown() error {
	var err error
	g.shutdownOnce.Do(func() {
		g.shutdown.Store(true)
		close(g.stop)
		g.wg.Wait()
		err = g.ml.Shutdown()
		_ = g.tr.Shutdown()
		g.closeSubscribers()
	})
	return err
}
