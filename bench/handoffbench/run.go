package handoffbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/handoff/transfer"
	"github.com/shoal-lb/shoal/lab"
)

// Options drive a run.
type Options struct {
	// Binary is the shoal binary the nodes run.
	Binary string
	// Concurrency is how many connections are open at once in the
	// throughput runs (default 8).
	Concurrency int
	// Requests1K and Requests1M are the requests of each throughput run
	// (defaults 1500 and 150).
	Requests1K, Requests1M int
	// LatencyMoves is how many handoffs the one-at-a-time latency run
	// makes (default 300).
	LatencyMoves int
	// ConnValue is the data plane's connection value of a 4-tuple
	// (dataplane.ConnValue), whose low 16 bits are the bucket.
	ConnValue func(seed uint32, src, dst netip.Addr, sport, dport uint16) uint32
	// IdleSleepMaxUS is every node's dataplane.idle_sleep_max_us (0: the
	// default, 500). The channel's frames cross both nodes' workers, each
	// of which may be in its idle sleep when a frame arrives.
	IdleSleepMaxUS int
	// LabLog receives the lab's own step lines (nil discards them).
	LabLog io.Writer
	// Log receives progress lines.
	Log func(format string, a ...any)
}

// The lab's benchmark group and objects.
const (
	Group  = "bench"
	Server = "n2" // the only member of Group
	// Wait bounds.
	upWait       = 15 * time.Minute // lab.Up, including the wait for the lab lock
	convergeWait = 60 * time.Second
	stopWait     = 40 * time.Second
	warmup       = 30 // requests before each kind of run, not counted
)

// Object is one benchmark object.
type Object struct {
	Name string // "1k", "1m"
	Size int
}

// Objects are the sizes measured.
var Objects = []Object{{"1k", 1 << 10}, {"1m", 1 << 20}}

// localPath is the object every node serves (lab.Objects); benchPath the
// one only n2 holds.
func localPath(o Object) string { return "/obj/" + o.Name }
func benchPath(o Object) string { return "/b/" + o.Name }

// Run brings up the lab, measures, and always tears the lab down.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Requests1K <= 0 {
		o.Requests1K = 1500
	}
	if o.Requests1M <= 0 {
		o.Requests1M = 150
	}
	if o.LatencyMoves <= 0 {
		o.LatencyMoves = 300
	}
	if o.ConnValue == nil {
		return nil, errors.New("handoffbench: Options.ConnValue is required")
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	var relay atomic.Bool // n1 and n3 with handoff.disabled
	configure := func(id string, c *config.Config) {
		c.Groups = append(c.Groups, groups.Group{Name: Group, Paths: []string{"/b/*"}, Policy: groups.ByHash})
		if id == Server {
			c.MemberOf = append(c.MemberOf, Group)
		}
		for i := range c.Cluster.Members {
			if c.Cluster.Members[i].ID == Server {
				c.Cluster.Members[i].Groups = append(c.Cluster.Members[i].Groups, Group)
			}
		}
		if o.IdleSleepMaxUS > 0 {
			c.Dataplane.IdleSleepMaxUS = o.IdleSleepMaxUS
		}
		if relay.Load() && id != Server {
			c.Handoff.Disabled = true
		}
	}
	o.Log("bringing up a 3-node lab, preset groups plus group %s on %s (waits up to %v while another process holds the lab lock)", Group, Server, upWait)
	upCtx, cancel := context.WithTimeout(ctx, upWait)
	defer cancel()
	l, err := lab.Up(upCtx, lab.Options{Nodes: 3, Preset: lab.PresetGroups, Binary: o.Binary, Configure: configure, Log: o.LabLog})
	if err != nil {
		return nil, err
	}
	defer lab.DownInto(&err)
	ids := l.NodeIDs()
	if err := converge(ctx, ids); err != nil {
		return nil, err
	}
	want := map[string][]byte{}
	for _, ob := range Objects {
		body, err := io.ReadAll(lab.ContentBytes("b/"+ob.Name, int64(ob.Size)))
		if err != nil {
			return nil, err
		}
		p := filepath.Join(lab.NodeContentDir(Server), "b", ob.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return nil, err
		}
		want[benchPath(ob)] = body
		lb, err := io.ReadAll(lab.ContentBytes("obj/"+ob.Name, int64(ob.Size)))
		if err != nil {
			return nil, err
		}
		want[localPath(ob)] = lb
	}
	cfg, err := l.NodeConfig(1)
	if err != nil {
		return nil, err
	}
	ports, err := originPorts(cfg.Cluster.Seed, o.ConnValue)
	if err != nil {
		return nil, err
	}
	o.Log("%d client ports land on n1 or n3", len(ports.ports))
	c := &client{ports: ports, want: want}
	rep = &Report{Concurrency: o.Concurrency, IdleSleepMaxUS: cfg.Dataplane.IdleSleepMaxUS, LoadBefore: loadavg()}
	defer func() { rep.LoadAfter = loadavg() }()
	requests := func(ob Object) int {
		if ob.Size >= 1<<20 {
			return o.Requests1M
		}
		return o.Requests1K
	}

	// Warm up: the channel pools, the page cache, the lab app's nothing.
	for _, p := range []string{localPath(Objects[0]), benchPath(Objects[0])} {
		c.run(ctx, p, warmup, o.Concurrency)
	}
	// The channel's own path: ICMP echo between the node addresses of an
	// origin and the destination, both through their workers (ping's
	// interval 10 ms and 200 ms: the workers awake, and back in their
	// idle sleep).
	for _, iv := range []string{"0.01", "0.2"} {
		rtt, err := pingRTT(ctx, "n1", lab.NodeIP(2), iv)
		if err != nil {
			o.Log("ping n1 → n2: %v", err)
			continue
		}
		rtt.Scenario = "ping n1 → n2 node address every " + iv + " s"
		rep.Peers = append(rep.Peers, rtt)
		o.Log("%s: avg %.0f µs", rtt.Scenario, rtt.AvgUS)
	}
	// One handoff at a time: the latency of a handoff on its own.
	before := snapshot(ids)
	seq := c.run(ctx, benchPath(Objects[0]), o.LatencyMoves, 1)
	after := settled(ctx, ids, before, seq.Modes["handoff"])
	rep.Latency = append(rep.Latency, latencyBetween("one at a time", before, after))
	rep.Steps = stepsBetween(before, after)
	seq.Mode, seq.Object, seq.Note = "handoff", Objects[0].Name, "concurrency 1 (the latency run)"
	rep.Runs = append(rep.Runs, seq)
	o.Log("latency run: %s", rep.Latency[0])

	for _, ob := range Objects {
		r := c.run(ctx, localPath(ob), requests(ob), o.Concurrency)
		r.Mode, r.Object = "local", ob.Name
		rep.Runs = append(rep.Runs, r)
		o.Log("%s", r)
		before := snapshot(ids)
		r = c.run(ctx, benchPath(ob), requests(ob), o.Concurrency)
		r.Mode, r.Object = "handoff", ob.Name
		rep.Runs = append(rep.Runs, r)
		rep.Latency = append(rep.Latency, latencyBetween(fmt.Sprintf("under the %s handoff run", ob.Name), before,
			settled(ctx, ids, before, r.Modes["handoff"])))
		o.Log("%s", r)
	}
	rep.Nodes = nodeCounters(ids)

	o.Log("restarting n1 and n3 with handoff.disabled: they relay to %s", Server)
	relay.Store(true)
	for k, id := range ids {
		if id == Server {
			continue
		}
		if err := lab.Stop(id, stopWait); err != nil {
			return rep, err
		}
		if err := rewriteConfig(l, k+1); err != nil {
			return rep, err
		}
		if err := lab.Restart(ctx, id, o.Binary); err != nil {
			return rep, err
		}
	}
	if err := converge(ctx, ids); err != nil {
		return rep, err
	}
	c.run(ctx, benchPath(Objects[0]), warmup, o.Concurrency)
	for _, ob := range Objects {
		r := c.run(ctx, benchPath(ob), requests(ob), o.Concurrency)
		r.Mode, r.Object = "relay", ob.Name
		rep.Runs = append(rep.Runs, r)
		o.Log("%s", r)
	}
	rep.RelayNodes = nodeCounters(ids)
	return rep, ctx.Err()
}

// pingRTT runs 50 pings from where to addr at interval iv (seconds).
func pingRTT(ctx context.Context, where, addr, iv string) (PeerFigure, error) {
	out, err := lab.Exec(ctx, where, "ping", "-q", "-n", "-c", "50", "-i", iv, addr).CombinedOutput()
	if err != nil {
		return PeerFigure{}, fmt.Errorf("%v: %s", err, out)
	}
	// rtt min/avg/max/mdev = 0.121/0.514/2.434/0.337 ms
	_, after, ok := strings.Cut(string(out), "min/avg/max/mdev = ")
	var f PeerFigure
	if !ok {
		return f, fmt.Errorf("no rtt line in %q", out)
	}
	if _, err := fmt.Sscanf(after, "%f/%f/%f", &f.MinUS, &f.AvgUS, &f.MaxUS); err != nil {
		return f, fmt.Errorf("rtt line %q: %v", after, err)
	}
	f.Kind, f.MinUS, f.AvgUS, f.MaxUS = "peer", f.MinUS*1e3, f.AvgUS*1e3, f.MaxUS*1e3
	return f, nil
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func converge(ctx context.Context, ids []string) error {
	cctx, cancel := context.WithTimeout(ctx, convergeWait)
	defer cancel()
	_, err := lab.WaitConverged(cctx, ids, len(ids))
	return err
}

// rewriteConfig writes node k's config file again from the lab's options
// (Configure now sets handoff.disabled), for lab.Restart to read.
func rewriteConfig(l *lab.Lab, k int) error {
	c, err := l.NodeConfig(k)
	if err != nil {
		return err
	}
	raw, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(lab.ConfigPath(c.NodeID), append([]byte("# Rewritten by shoal bench handoff.\n"), raw...), 0o644)
}

// ports hands out client ports owned by n1 or n3, each once.
type ports struct {
	ports []int
	next  atomic.Int64
}

func (p *ports) take() (int, bool) {
	i := p.next.Add(1) - 1
	if int(i) >= len(p.ports) {
		return 0, false
	}
	return p.ports[i], true
}

// originPorts lists the client ports (1024..65535) whose connections to
// VIP:80 land on a node other than Server, by the table n1 runs.
func originPorts(seed uint32, cv func(uint32, netip.Addr, netip.Addr, uint16, uint16) uint32) (*ports, error) {
	var rg api.Ranges
	if err := api.Get(lab.SocketPath("n1"), api.PathRanges, &rg); err != nil {
		return nil, fmt.Errorf("handoffbench: %s: %w", api.PathRanges, err)
	}
	owner := make([]string, 1<<16)
	for _, iv := range rg.Intervals {
		for b := iv.From; b <= iv.To && b < len(owner); b++ {
			owner[b] = iv.Owner
		}
	}
	src, dst := netip.MustParseAddr(lab.ClientIP), netip.MustParseAddr(lab.VIP)
	p := &ports{}
	for port := 1024; port < 65536; port++ {
		o := owner[uint16(cv(seed, src, dst, uint16(port), 80))]
		if o != "" && o != Server {
			p.ports = append(p.ports, port)
		}
	}
	if len(p.ports) < 1000 {
		return nil, fmt.Errorf("handoffbench: only %d client ports land outside %s; the table is %+v", len(p.ports), Server, rg)
	}
	return p, nil
}

// snapshot reads every node's GET /v1/handoffs (a node that does not
// answer is left out).
func snapshot(ids []string) map[string]api.Handoffs {
	out := map[string]api.Handoffs{}
	for _, id := range ids {
		var h api.Handoffs
		if api.Get(lab.SocketPath(id), api.PathHandoffs, &h) == nil {
			out[id] = h
		}
	}
	return out
}

// settled is the snapshot once the origins have counted the moves the
// client saw (want) and timed their steps: a client can read its whole
// response from the destination before the origin has read the ACCEPT and
// counted the move, and the origin times the steps only after the
// withdrawal and the close that follow (origin_close is the last). It
// waits at most 2 s.
func settled(ctx context.Context, ids []string, before map[string]api.Handoffs, want int) map[string]api.Handoffs {
	deadline := time.Now().Add(2 * time.Second)
	for {
		after := snapshot(ids)
		var n uint64
		for id, a := range after {
			if id != Server {
				n += a.Steps[transfer.StepClose].Count - before[id].Steps[transfer.StepClose].Count
			}
		}
		if n >= uint64(want) || time.Now().After(deadline) || ctx.Err() != nil {
			return after
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeCounters is what the nodes counted that a benchmark must see at
// zero: failures and losses, by node.
func nodeCounters(ids []string) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for id, h := range snapshot(ids) {
		m := map[string]uint64{}
		for k, v := range h.Failures {
			m["failure:"+k] += v
		}
		for k, v := range h.ChannelRefused {
			m["channel_refused:"+k] += v
		}
		m["lost"], m["relay_failed"], m["fallback_local"] = h.Lost, h.RelayFailed, h.FallbackLocal
		m["handed_off"], m["relayed"] = sum(h.HandedOff), h.Relayed
		m["adopted"] = sum(h.Adopted)
		m["status_5xx"], m["status_4xx"] = h.Served["status_5xx"], h.Served["status_4xx"]
		for k, v := range m {
			if v == 0 {
				delete(m, k)
			}
		}
		out[id] = m
	}
	return out
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
