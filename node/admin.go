package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/api"
	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/ui"
)

// The admin API: HTTP over the unix socket admin.socket (mode 0600: root
// only) and, optionally, over TCP behind a bearer token. Reads and the
// operator's changes (drain, weight, the server drill); the paths and wire
// types are in package api, documented in docs/operations.md.

type admin struct {
	srv  *http.Server
	tcp  *http.Server // optional, bearer token
	path string
	ui   *ui.UI
}

func startAdmin(n *Node) (*admin, error) {
	path := n.cfg.Admin.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, inputErr("admin.socket: %v", err)
	}
	// A socket file left by a crashed node is stale only if nobody answers.
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, inputErr("admin.socket: %s is in use by a running node", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, inputErr("admin.socket: %v", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.status()) })
	mux.HandleFunc("GET "+api.PathStats, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.stats()) })
	mux.HandleFunc("GET "+api.PathMetrics, n.serveMetrics)
	mux.HandleFunc("POST "+api.PathDrain, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			On *bool `json:"on"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.On == nil {
			http.Error(w, `body must be {"on": true|false}`, http.StatusBadRequest)
			return
		}
		if n.gossip == nil {
			http.Error(w, "drain needs gossip mode (gossip.key)", http.StatusConflict)
			return
		}
		n.agent.Drain(*req.On)
		n.poke()
		writeJSON(w, n.agent.State())
	})
	mux.HandleFunc("POST "+api.PathWeight, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Weight *float64 `json:"weight"`
			Reset  bool     `json:"reset"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || (req.Weight == nil) == !req.Reset {
			http.Error(w, `body must be {"weight": N} or {"reset": true}`, http.StatusBadRequest)
			return
		}
		if n.gossip == nil {
			http.Error(w, "weight needs gossip mode (gossip.key)", http.StatusConflict)
			return
		}
		if err := n.agent.SetWeight(req.Weight); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.poke()
		writeJSON(w, n.agent.State())
	})
	mux.HandleFunc("GET "+api.PathRanges, func(w http.ResponseWriter, r *http.Request) {
		g := r.URL.Query().Get("group")
		out, ok := n.ranges(g)
		if !ok {
			http.Error(w, fmt.Sprintf("no group %q", g), http.StatusNotFound)
			return
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET "+api.PathFlows, func(w http.ResponseWriter, r *http.Request) {
		max := 1000
		if v := r.URL.Query().Get("max"); v != "" {
			if _, err := fmt.Sscanf(v, "%d", &max); err != nil || max < 1 || max > 1000000 {
				http.Error(w, "max must be 1..1000000", http.StatusBadRequest)
				return
			}
		}
		fs, err := n.runtime.Flows(max)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, fs)
	})
	// The server drill: stop or start the node's own web server while the
	// node runs (a dead application on a live node), to watch health
	// checks, fail-open and slow start act. See docs/operations.md.
	mux.HandleFunc("POST "+api.PathServer, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Running *bool `json:"running"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Running == nil {
			http.Error(w, `body must be {"running": true|false}`, http.StatusBadRequest)
			return
		}
		if err := n.setServer(*req.Running); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, n.health())
	})
	mux.HandleFunc("GET "+api.PathHealth, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.health()) })
	mux.HandleFunc("GET "+api.PathGroups, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.groupStatus()) })
	mux.HandleFunc("GET "+api.PathContent, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, n.versions.status(r.URL.Query().Get("path")))
	})
	mux.HandleFunc("POST "+api.PathContentPublish, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		threshold, batch := 50, 1
		for name, dst := range map[string]*int{"threshold": &threshold, "batch": &batch} {
			if s := q.Get(name); s != "" {
				v, err := strconv.Atoi(s)
				if err != nil {
					http.Error(w, fmt.Sprintf("%s: %q is not a number", name, s), http.StatusBadRequest)
					return
				}
				*dst = v
			}
		}
		pub, code, err := n.versions.Publish(q.Get("path"), q.Get("group"), threshold, batch, r)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, publicationOf(pub))
	})
	mux.HandleFunc("GET "+api.PathHandoffs, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.handoffs()) })
	// Go's profiler (CPU, heap, goroutines, execution trace), to see where
	// a node's CPU goes; on the TCP listener it needs the token (bearer).
	mux.HandleFunc("GET "+pathPprof, pprof.Index)
	mux.HandleFunc("GET "+pathPprof+"cmdline", pprof.Cmdline)
	mux.HandleFunc("GET "+pathPprof+"profile", pprof.Profile)
	mux.HandleFunc("GET "+pathPprof+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+pathPprof+"trace", pprof.Trace)
	// The status page and its live feed (package ui), read-only.
	page := ui.New(uiSource{n})
	page.Mount(mux)
	a := &admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}, path: path, ui: page}
	go a.srv.Serve(ln)
	if n.cfg.Admin.Listen != "" {
		tok, err := n.cfg.AdminToken()
		if err != nil {
			a.stop()
			return nil, inputErr("%v", err)
		}
		tln, err := net.Listen("tcp", n.cfg.Admin.Listen)
		if err != nil {
			a.stop()
			return nil, inputErr("admin.listen: %v", err)
		}
		a.tcp = &http.Server{Handler: bearer(tok, mux), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		go a.tcp.Serve(tln)
	}
	return a, nil
}

// bearer guards the TCP listener: reads (GET, HEAD: the status page, its
// events, /v1/* and /metrics) are open, except the flow list, which names
// clients, and the profiler, which shows the process's internals and costs
// CPU; every change, and everything else, needs the token. The
// comparison takes the same time whatever the guess.
func bearer(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path != api.PathFlows &&
			!strings.HasPrefix(r.URL.Path, pathPprof) {
			next.ServeHTTP(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pathPprof is where Go's profiler answers (net/http/pprof).
const pathPprof = "/debug/pprof/"

func (a *admin) stop() {
	// Event streams never go idle, so Shutdown would not wait for them:
	// end them first, so none reads the node while it is torn down.
	a.ui.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
	if a.tcp != nil {
		a.tcp.Shutdown(ctx)
	}
	os.Remove(a.path)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ranges is GET /v1/ranges: the cluster table (group "") or a group's;
// false when there is no such group.
func (n *Node) ranges(group string) (api.Ranges, bool) {
	t := n.ctrl.Snapshot().Table
	if t == nil {
		return api.Ranges{Intervals: []api.Interval{}}, group == ""
	}
	if group != "" {
		gt, ok := n.Groups().Table(group)
		if !ok {
			return api.Ranges{}, false
		}
		t = gt
	}
	out := api.Ranges{TableHash: t.Hash, Intervals: []api.Interval{}}
	for _, iv := range t.Intervals() {
		out.Intervals = append(out.Intervals, api.Interval{From: iv.From, To: iv.To, Owner: iv.Owner})
	}
	return out, true
}

// status is GET /v1/status.
func (n *Node) status() api.Status {
	snap := n.ctrl.Snapshot()
	s := api.Status{
		NodeID: n.cfg.NodeID, VIP: n.cfg.Cluster.VIP, Address: n.cfg.Interface.Address,
		UptimeSec: time.Since(n.started).Seconds(), Hugepages: n.hugepages,
		Epoch: snap.Epoch, AgreementHash: snap.Hash, TableAlgorithm: snap.Algorithm, TableAge: time.Since(snap.TableSince).Seconds(),
		OwnedBuckets: snap.Owned, ExtraBuckets: snap.Extra, Agreement: true,
		FailOpen: snap.FailOpenBuilds, Holding: snap.Holding, ReplyPath: n.replyPathStatus(), Prefilter: n.prefilterStatus(),
	}
	if snap.Table != nil {
		s.TableHash = snap.Table.Hash
		counts := snap.Table.Count()
		for _, m := range snap.Table.Members {
			s.Members = append(s.Members, api.MemberStatus{ID: m.ID, Weight: m.Weight, Buckets: counts[m.ID],
				Share: float64(counts[m.ID]) / ranges.Buckets, Capacity: m.Weight, Availability: m.Weight, Agrees: true})
		}
	}
	if n.gossip == nil {
		return s
	}
	s.Gossip = true
	st := n.agent.State()
	s.Capacity = &st
	gs := n.gossip.Stats()
	s.GossipStats = &gs
	s.Agreement, s.Disagree = n.ctrl.Agreement()
	byID := map[string]*api.MemberStatus{}
	for i := range s.Members {
		byID[s.Members[i].ID] = &s.Members[i]
	}
	for _, m := range n.gossip.Members() {
		ms := byID[m.Meta.NodeID]
		if ms == nil {
			s.Members = append(s.Members, api.MemberStatus{ID: m.Meta.NodeID})
			ms = &s.Members[len(s.Members)-1]
		}
		ms.Addr, ms.State, ms.Capacity, ms.Availability = m.Addr, m.State, m.Meta.Capacity, m.Meta.Availability
		ms.Health, ms.TableHash, ms.Agrees = m.Meta.Health, m.Meta.TableHash, m.Meta.TableHash == s.AgreementHash
		ms.TableAlgorithmMax = m.Meta.TableAlgorithmMax()
		if ms.Health == "" {
			ms.Health = gossip.HealthHealthy
		}
	}
	return s
}

// stats is GET /v1/stats.
func (n *Node) stats() api.Stats {
	ws := n.runtime.Stats()
	tot, flows := dataplane.Totals(ws)
	s := api.Stats{NodeID: n.cfg.NodeID, Total: tot, Flows: flows, Workers: ws, Ports: map[string]api.PortStats{}, Reply: n.replyPathStats(), Prefilter: n.prefilterStats()}
	for name, p := range map[string]*dpdk.Port{"nic": n.nic, "tap": n.tap} {
		if st, err := p.Stats(); err == nil {
			s.Ports[name] = api.PortStats{RxPackets: st.RxPackets, TxPackets: st.TxPackets, RxMissed: st.RxMissed,
				RxErrors: st.RxErrors, TxErrors: st.TxErrors, RxNoMbuf: st.RxNoMbuf}
		}
	}
	return s
}

// groupStatus is GET /v1/groups.
func (n *Node) groupStatus() []api.GroupStatus {
	gt := n.Groups()
	var out []api.GroupStatus
	for _, def := range gt.Defs() {
		tb, _ := gt.Table(def.Name)
		counts := tb.Count()
		gs := api.GroupStatus{Group: def, TableHash: tb.Hash}
		if gs.Policy == "" {
			gs.Policy = groups.ByHash
		}
		for _, m := range gt.Members(def.Name) {
			gs.Members = append(gs.Members, api.MemberStatus{ID: m.ID, Availability: m.Availability,
				Buckets: counts[m.ID], Share: float64(counts[m.ID]) / ranges.Buckets})
			gs.Local = gs.Local || m.ID == n.cfg.NodeID
		}
		out = append(out, gs)
	}
	return out
}

// health is GET /v1/health.
func (n *Node) health() api.Health {
	h := api.Health{NodeID: n.cfg.NodeID, Healthy: true, ServerRunning: n.serverRunning(), SlowStart: 1}
	if n.checker != nil {
		h.Healthy, h.Checks = n.checker.Healthy(), n.checker.States()
	}
	st := n.status()
	if st.Capacity != nil {
		h.SlowStart = st.Capacity.Ramp
	}
	for _, m := range st.Members {
		hl := m.Health
		if hl == "" {
			hl = "unknown (static members)"
		}
		h.Members = append(h.Members, api.MemberHealth{ID: m.ID, Health: hl, Capacity: m.Capacity, Availability: m.Availability, Buckets: m.Buckets})
	}
	return h
}
