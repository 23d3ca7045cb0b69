package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	testKey  = []byte("0123456789abcdef")
	otherKey = []byte("fedcba9876543210")
)

// deadline bounds every wait. Loopback convergence takes milliseconds to a
// second; the margin keeps CI under load deterministic.
const deadline = 10 * time.Second

// recorder is a slog.Handler that keeps records for assertions. It never
// writes to t.Log: memberlist goroutines may log after a test returns.
type recorder struct {
	mu   sync.Mutex
	recs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, b.String())
	r.mu.Unlock()
	return nil
}

// count returns how many records contain every fragment.
func (r *recorder) count(fragments ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, s := range r.recs {
		for _, f := range fragments {
			if !strings.Contains(s, f) {
				continue next
			}
		}
		n++
	}
	return n
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.recs, "\n")
}

type node struct {
	*Gossip
	rec *recorder
}

func testConfig(id string, key []byte, rec *recorder) Config {
	return Config{
		NodeID:         id,
		BindAddr:       "127.0.0.1",
		BindPort:       EphemeralPort,
		Key:            key,
		Logger:         slog.New(rec),
		RejoinInterval: -1, // tests join explicitly
	}
}

func startNode(t *testing.T, id string, key []byte, seeds ...string) node {
	t.Helper()
	rec := &recorder{}
	cfg := testConfig(id, key, rec)
	cfg.Seeds = seeds
	g, err := Start(cfg, Meta{NodeID: id, Capacity: 10, Availability: 5, Groups: []string{"web"}})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		_ = g.Shutdown()
		if t.Failed() {
			t.Logf("log of %s:\n%s", id, rec.dump())
		}
	})
	return node{g, rec}
}

// cluster starts n nodes seeded from the first.
func cluster(t *testing.T, n int) []node {
	t.Helper()
	nodes := []node{startNode(t, "n1", testKey)}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), testKey, nodes[0].LocalAddr()))
	}
	for _, nd := range nodes {
		waitMembers(t, nd, ids(n)...)
	}
	return nodes
}

func ids(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("n%d", i))
	}
	return out
}

func memberIDs(g *Gossip) []string {
	var out []string
	for _, m := range g.Members() {
		out = append(out, m.Meta.NodeID)
	}
	return out
}

// waitFor polls cond until it holds or deadline passes, and returns the
// time it took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > deadline {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func waitMembers(t *testing.T, nd node, want ...string) time.Duration {
	t.Helper()
	return waitFor(t, fmt.Sprintf("%s to see members %v (sees %v)", nd.cfg.NodeID, want, memberIDs(nd.Gossip)),
		func() bool { return slices.Equal(memberIDs(nd.Gossip), want) })
}

func TestStartRequiresKey(t *testing.T) {
	rec := &recorder{}
	cfg := testConfig("a", nil, rec)
	if _, err := Start(cfg, Meta{}); err == nil || !strings.Contains(err.Error(), "Key is required") {
		t.Fatalf("Start without key: err = %v", err)
	}
	cfg.Key = []byte("short")
	if _, err := Start(cfg, Meta{}); err == nil || !strings.Contains(err.Error(), "Key is 5 bytes") {
		t.Fatalf("Start with 5-byte key: err = %v", err)
	}
	cfg.Key = testKey
	if _, err := Start(cfg, Meta{NodeID: "b"}); err == nil || !strings.Contains(err.Error(), "differs from Config.NodeID") {
		t.Fatalf("Start with mismatched meta ID: err = %v", err)
	}
	cfg.BindAddr = "0.0.0.0"
	if _, err := Start(cfg, Meta{}); err == nil {
		t.Fatal("Start accepted BindAddr 0.0.0.0")
	}
	cfg = testConfig("a", nil, rec)
	cfg.AllowPlaintext = true
	g, err := Start(cfg, Meta{})
	if err != nil {
		t.Fatalf("plaintext allowed: %v", err)
	}
	if n, err := g.Join([]string{g.LocalAddr()}); n != 0 || err != nil {
		t.Fatalf("joining only self: n=%d err=%v, want 0, nil", n, err)
	}
	_ = g.Shutdown()
	if err := g.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, ok := <-g.Subscribe(); ok {
		t.Fatal("Subscribe after Shutdown returned an open channel")
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Shutdown: %v", err)
	}
}

func TestThreeNodesMetaAndUpdate(t *testing.T) {
	nodes := cluster(t, 3)
	for _, nd := range nodes {
		for _, m := range nd.Members() {
			var want Meta
			for _, o := range nodes {
				if o.cfg.NodeID == m.Meta.NodeID {
					want = o.LocalMeta()
					if m.Addr != o.LocalAddr() {
						t.Errorf("%s sees %s at %s, want %s", nd.cfg.NodeID, m.Meta.NodeID, m.Addr, o.LocalAddr())
					}
				}
			}
			if !slices.Equal(m.Meta.Groups, want.Groups) || m.Meta.Capacity != want.Capacity ||
				m.Meta.Availability != want.Availability || m.Meta.Health != HealthHealthy || m.State != StateAlive {
				t.Errorf("%s sees %+v, want %+v", nd.cfg.NodeID, m, want)
			}
		}
	}

	sub := nodes[2].Subscribe()
	select { // drain a notification left from the joins
	case <-sub:
	default:
	}
	upd := Meta{NodeID: "n1", Capacity: 50, Availability: 25, Health: HealthDraining,
		Groups: []string{"web", "video"}, TableHash: "abc", Epoch: 2}
	if err := nodes[0].UpdateMeta(upd); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[1:] {
		took := waitFor(t, nd.cfg.NodeID+" to see n1's new meta", func() bool {
			m := nd.Members()[0].Meta
			return m.Capacity == 50 && m.Epoch == 2 && m.TableHash == "abc" && m.Health == HealthDraining
		})
		t.Logf("%s saw n1's update after %v", nd.cfg.NodeID, took)
	}
	select {
	case <-sub:
	case <-time.After(deadline):
		t.Fatal("Subscribe did not fire on a meta update")
	}
	if err := nodes[0].UpdateMeta(Meta{NodeID: "n1", Capacity: -1}); err == nil {
		t.Fatal("UpdateMeta accepted a negative capacity")
	}
	st := nodes[1].Stats()
	if st.MembersAlive != 3 || st.PacketsReceived == 0 || st.BytesSent == 0 || st.StreamsAccepted+st.StreamsDialed == 0 {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("n2 stats: %+v", st)
}

func TestCrashDetected(t *testing.T) {
	nodes := cluster(t, 3)
	subs := []<-chan struct{}{nodes[0].Subscribe(), nodes[1].Subscribe()}
	for _, s := range subs {
		select {
		case <-s:
		default:
		}
	}
	crashed := time.Now()
	if err := nodes[2].Shutdown(); err != nil { // no Leave: a crash
		t.Fatal(err)
	}
	for i, nd := range nodes[:2] {
		waitMembers(t, nd, "n1", "n2")
		took := time.Since(crashed)
		t.Logf("%s dropped crashed n3 after %v", nd.cfg.NodeID, took)
		if took > 5*time.Second {
			t.Errorf("crash detection took %v, want < 5s", took)
		}
		select {
		case <-subs[i]:
		default:
			t.Errorf("%s: Subscribe did not fire on the crash", nd.cfg.NodeID)
		}
		if nd.rec.count(`member "n3"`, "is gone") == 0 {
			t.Errorf("%s did not log n3's death", nd.cfg.NodeID)
		}
	}
}

func TestGracefulLeave(t *testing.T) {
	nodes := cluster(t, 3)
	left := time.Now()
	if err := nodes[2].Leave(deadline); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[:2] {
		waitMembers(t, nd, "n1", "n2")
		t.Logf("%s dropped n3 %v after Leave began", nd.cfg.NodeID, time.Since(left))
		if nd.rec.count(`member "n3"`, "is gone") == 0 {
			t.Errorf("%s did not log n3 leaving", nd.cfg.NodeID)
		}
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
}

func TestWrongKeyRefused(t *testing.T) {
	nodes := cluster(t, 3)
	seed := nodes[0].LocalAddr()

	// At start: Start fails with ErrWrongKey.
	rec := &recorder{}
	cfg := testConfig("n4", otherKey, rec)
	cfg.Seeds = []string{seed}
	if g, err := Start(cfg, Meta{}); !errors.Is(err, ErrWrongKey) {
		if g != nil {
			_ = g.Shutdown()
		}
		t.Fatalf("Start with another key: err = %v, want ErrWrongKey", err)
	} else {
		t.Logf("Start with another key: %v", err)
	}

	// A later Join fails too, retried three times; so does a plaintext node.
	bad := startNode(t, "n4", otherKey)
	for range 3 {
		if _, err := bad.Join([]string{seed}); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("Join with another key: err = %v, want ErrWrongKey", err)
		}
	}
	prec := &recorder{}
	pcfg := testConfig("n5", nil, prec)
	pcfg.AllowPlaintext = true
	plain, err := Start(pcfg, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown()
	if _, err := plain.Join([]string{seed}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("plaintext Join into an encrypted cluster: err = %v, want ErrWrongKey", err)
	}

	waitFor(t, "n1 to count refused messages", func() bool { return nodes[0].Stats().RefusedMessages >= 5 })
	if got := nodes[0].rec.count("gossip: refused message from 127.0.0.1:", "wrong cluster key?"); got != 1 {
		t.Fatalf("n1 logged %d refusal lines for 5 refused streams from 127.0.0.1, want 1 (rate-limited):\n%s", got, nodes[0].rec.dump())
	}
	if nodes[0].rec.count("decrypt") != 1 { // only inside the single refusal line's detail
		t.Fatalf("memberlist's decrypt errors leaked into the log:\n%s", nodes[0].rec.dump())
	}
	for _, nd := range nodes {
		if got := memberIDs(nd.Gossip); !slices.Equal(got, ids(3)) {
			t.Fatalf("%s sees %v after the refused joins", nd.cfg.NodeID, got)
		}
	}
	if got := memberIDs(bad.Gossip); !slices.Equal(got, []string{"n4"}) {
		t.Fatalf("wrong-key node sees %v", got)
	}
	t.Logf("n1 stats: refused=%d", nodes[0].Stats().RefusedMessages)
}

func TestNodeIDConflict(t *testing.T) {
	nodes := cluster(t, 2)
	rec := &recorder{}
	cfg := testConfig("n2", testKey, rec)
	cfg.Seeds = []string{nodes[0].LocalAddr()}
	g, err := Start(cfg, Meta{})
	if !errors.Is(err, ErrNodeIDConflict) {
		if g != nil {
			_ = g.Shutdown()
		}
		t.Fatalf("duplicate node ID: err = %v, want ErrNodeIDConflict\n%s", err, rec.dump())
	}
	t.Logf("duplicate: %v", err)
	if rec.count(`node ID "n2" is claimed by`) == 0 {
		t.Fatalf("the duplicate did not log the conflict:\n%s", rec.dump())
	}
	waitFor(t, "n1 to log the conflict", func() bool { return nodes[0].rec.count(`node ID "n2" is claimed by`) > 0 })
	ms := nodes[0].Members()
	if len(ms) != 2 || ms[1].Addr != nodes[1].LocalAddr() {
		t.Fatalf("n1 members after conflict: %+v", ms)
	}
	if nodes[0].Stats().NodeIDConflicts == 0 {
		t.Fatal("conflict not counted")
	}
}

// rawPeer is a bare memberlist node whose meta bytes the test controls,
// standing in for a newer or broken shoal node.
type rawPeer struct {
	ml   *memberlist.Memberlist
	meta atomic.Value // []byte
}

func (p *rawPeer) NodeMeta(int) []byte             { return p.meta.Load().([]byte) }
func (p *rawPeer) NotifyMsg([]byte)                {}
func (p *rawPeer) GetBroadcasts(int, int) [][]byte { return nil }
func (p *rawPeer) LocalState(bool) []byte          { return nil }
func (p *rawPeer) MergeRemoteState([]byte, bool)   {}

func startRawPeer(t *testing.T, name string, meta []byte, seed string) *rawPeer {
	t.Helper()
	p := &rawPeer{}
	p.meta.Store(meta)
	mc := memberlist.DefaultLocalConfig()
	mc.Name = name
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.AdvertisePort = 0
	mc.SecretKey = testKey
	mc.Delegate = p
	mc.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	p.ml = ml
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{seed}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadMetaPeer(t *testing.T) {
	nodes := cluster(t, 2)
	seed := nodes[0].LocalAddr()
	good, err := EncodeMeta(Meta{NodeID: "v3", Capacity: 10})
	if err != nil {
		t.Fatal(err)
	}
	v3 := append([]byte{3}, good[1:]...)
	p := startRawPeer(t, "v3", v3, seed)

	for _, nd := range nodes {
		waitFor(t, nd.cfg.NodeID+" to reject v3's meta", func() bool {
			st := nd.Stats()
			return st.MetaRejected[ReasonVersion] >= 1 && st.MembersExcluded == 1
		})
		if got := memberIDs(nd.Gossip); !slices.Equal(got, ids(2)) {
			t.Fatalf("%s lists %v, want the version-3 peer excluded", nd.cfg.NodeID, got)
		}
	}
	// A second bad meta with the same problem is counted but not logged again.
	v3b := append([]byte(nil), v3...)
	v3b[1] = 9 // epoch changes
	p.meta.Store(v3b)
	if err := p.ml.UpdateNode(deadline); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to count the second version-3 meta", func() bool { return nodes[0].Stats().MetaRejected[ReasonVersion] >= 2 })
	if got := nodes[0].rec.count(`ignoring member "v3"`, "version 3"); got != 1 {
		t.Fatalf("n1 logged the bad peer %d times, want once:\n%s", got, nodes[0].rec.dump())
	}
	if nodes[0].rec.count(`ignoring member "v3" at 127.0.0.1:`) != 1 {
		t.Fatal("the log line does not name the peer's address")
	}

	// The peer is fixed: it is listed again.
	p.meta.Store(good)
	if err := p.ml.UpdateNode(deadline); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, nodes[0], "n1", "n2", "v3")
}

func TestClampedAndMismatchedPeers(t *testing.T) {
	nodes := cluster(t, 1)
	seed := nodes[0].LocalAddr()
	huge, _ := EncodeMeta(Meta{NodeID: "huge", Capacity: 10})
	huge = setFloat(huge, capOff, 1e300)
	startRawPeer(t, "huge", huge, seed)
	liar, _ := EncodeMeta(Meta{NodeID: "n1", Capacity: 10})
	startRawPeer(t, "liar", liar, seed)
	empty := startRawPeer(t, "empty", nil, seed)
	_ = empty

	waitFor(t, "n1 to judge three raw peers", func() bool {
		st := nodes[0].Stats()
		return st.MetaClamped >= 1 && st.MetaRejected[ReasonNodeID] >= 1 && st.MetaRejected[ReasonMalformed] >= 1
	})
	ms := nodes[0].Members()
	if got := memberIDs(nodes[0].Gossip); !slices.Equal(got, []string{"huge", "n1"}) {
		t.Fatalf("members %v, want huge (clamped) and n1", got)
	}
	if ms[0].Meta.Capacity != MaxCapacity {
		t.Fatalf("huge capacity clamped to %v, want %v", ms[0].Meta.Capacity, float64(MaxCapacity))
	}
	if nodes[0].rec.count(`member "huge"`, "out-of-range") != 1 || nodes[0].rec.count(`ignoring member "liar"`, "node_id") != 1 {
		t.Fatalf("log:\n%s", nodes[0].rec.dump())
	}
}

func TestUnreachableSeedThenRejoin(t *testing.T) {
	// Reserve a port for n1, then start n2 first with n1 as its seed.
	probe := startNode(t, "probe", testKey)
	addr := probe.LocalAddr()
	_ = probe.Shutdown()

	rec := &recorder{}
	cfg := testConfig("n2", testKey, rec)
	cfg.Seeds = []string{addr}
	cfg.RejoinInterval = 50 * time.Millisecond
	cfg.TCPTimeout = 200 * time.Millisecond
	n2, err := Start(cfg, Meta{})
	if err != nil {
		t.Fatalf("an unreachable seed must not fail Start: %v", err)
	}
	t.Cleanup(func() { _ = n2.Shutdown() })
	if rec.count("no seed reachable yet") != 1 {
		t.Fatalf("log:\n%s", rec.dump())
	}

	rec1 := &recorder{}
	cfg1 := testConfig("n1", testKey, rec1)
	_, port, _ := strings.Cut(addr, "127.0.0.1:")
	fmt.Sscan(port, &cfg1.BindPort)
	n1, err := Start(cfg1, Meta{})
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", port, err)
	}
	t.Cleanup(func() { _ = n1.Shutdown() })
	took := waitMembers(t, node{n2, rec}, "n1", "n2")
	waitMembers(t, node{n1, rec1}, "n1", "n2")
	t.Logf("n2 rejoined %v after n1 came up", took)
}

// TestShutdownUnderTraffic: Shutdown must return while packets keep
// arriving (memberlist's UDP listener blocks on an unbuffered channel that
// the counting transport has to keep draining until the socket is closed).
func TestShutdownUnderTraffic(t *testing.T) {
	for i := range 5 {
		nd := startNode(t, fmt.Sprintf("t%d", i), testKey)
		conn, err := net.Dial("udp", nd.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			junk := []byte("not a memberlist packet, and not encrypted with the key")
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = conn.Write(junk)
				}
			}
		}()
		time.Sleep(20 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- nd.Shutdown() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(deadline):
			t.Fatal("Shutdown hung while packets were arriving")
		}
		close(stop)
		wg.Wait()
		_ = conn.Close()
		if nd.Stats().RefusedMessages == 0 {
			t.Fatal("junk packets were not counted as refused")
		}
	}
}

// recState is an in-repo StateDelegate that offers one broadcast and a
// fixed full state, and records what it receives.
type recState struct {
	mu       sync.Mutex
	out      [][]byte
	local    []byte
	msgs     [][]byte
	remote   [][]byte
	joinSeen bool
}

func (s *recState) LocalState(join bool) []byte { return s.local }
func (s *recState) MergeRemoteState(buf []byte, join bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remote = append(s.remote, slices.Clone(buf))
	s.joinSeen = s.joinSeen || join
}
func (s *recState) GetBroadcasts(overhead, limit int) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.out
	s.out = nil
	return out
}
func (s *recState) NotifyMsg(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, slices.Clone(buf))
}

// TestStateDelegate: Config.State gets the peer's full state on join and
// the peer's broadcasts; without it (every other test) nothing changes.
func TestStateDelegate(t *testing.T) {
	start := func(id string, s *recState, seeds ...string) *Gossip {
		cfg := testConfig(id, testKey, &recorder{})
		cfg.Seeds, cfg.State = seeds, s
		g, err := Start(cfg, Meta{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Shutdown() })
		return g
	}
	sa, sb := &recState{local: []byte("state of a")}, &recState{local: []byte("state of b")}
	a := start("a", sa)
	start("b", sb, a.LocalAddr())
	sa.mu.Lock()
	sa.out = [][]byte{[]byte("delta from a")}
	sa.mu.Unlock()
	waitFor(t, "b to receive a's state and broadcast", func() bool {
		sb.mu.Lock()
		defer sb.mu.Unlock()
		return len(sb.msgs) == 1 && string(sb.msgs[0]) == "delta from a" &&
			len(sb.remote) > 0 && string(sb.remote[0]) == "state of a" && sb.joinSeen
	})
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if len(sa.remote) == 0 || string(sa.remote[0]) != "state of b" {
		t.Fatalf("a merged %q, want b's state", sa.remote)
	}
}
