package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane"
)

// The admin API: HTTP over the unix socket admin.socket. Read-only in this
// release. Paths and JSON shapes are documented in docs/operations.md.

// Status is GET /v1/status.
type Status struct {
	NodeID       string         `json:"node_id"`
	VIP          string         `json:"vip"`
	Address      string         `json:"address"`
	UptimeSec    float64        `json:"uptime_sec"`
	Hugepages    bool           `json:"hugepages"`
	Epoch        uint64         `json:"epoch"`
	TableHash    string         `json:"table_hash"`
	OwnedBuckets int            `json:"owned_buckets"`
	ExtraBuckets int            `json:"extra_buckets"`
	Members      []MemberStatus `json:"members"`
	// Gossip mode only.
	Gossip      bool            `json:"gossip"`
	Agreement   bool            `json:"agreement"`
	Disagree    []string        `json:"disagreeing,omitempty"`
	TableAge    float64         `json:"table_age_sec"`
	Holding     bool            `json:"holding"` // still accepting buckets given away, until the peers agree
	Capacity    *capacity.State `json:"capacity,omitempty"`
	FailOpen    uint64          `json:"fail_open_builds"`
	GossipStats *gossip.Stats   `json:"gossip_stats,omitempty"`
}

// MemberStatus is one member's weight and table share.
type MemberStatus struct {
	ID      string  `json:"id"`
	Weight  float64 `json:"weight"` // the weight the table was built with
	Buckets int     `json:"buckets"`
	Share   float64 `json:"share"`
	// Gossip mode only.
	Addr         string  `json:"addr,omitempty"`
	State        string  `json:"state,omitempty"`
	Capacity     float64 `json:"capacity"`
	Availability float64 `json:"availability"`
	Health       string  `json:"health,omitempty"`
	TableHash    string  `json:"table_hash,omitempty"`
	Agrees       bool    `json:"agrees"`
}

// Stats is GET /v1/stats.
type Stats struct {
	NodeID  string                  `json:"node_id"`
	Total   dataplane.Counters      `json:"total"`
	Flows   dataplane.FlowCounts    `json:"flows"`
	Workers []dataplane.WorkerStats `json:"workers"`
	Ports   map[string]PortStats    `json:"ports"`
}

// PortStats are a device's own counters.
type PortStats struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxMissed  uint64 `json:"rx_missed"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	RxNoMbuf  uint64 `json:"rx_nombuf"`
}

// Ranges is GET /v1/ranges.
type Ranges struct {
	TableHash string            `json:"table_hash"`
	Intervals []ranges.Interval `json:"intervals"`
}

type admin struct {
	srv  *http.Server
	tcp  *http.Server // optional, bearer token
	path string
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
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.status()) })
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.stats()) })
	mux.HandleFunc("GET /metrics", n.serveMetrics)
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			On *bool `json:"on"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.On == nil {
			http.Error(w, `body must be {"on": true|false}`, http.StatusBadRequest)
			return
		}
		c := n.clusterOrNil()
		if c == nil {
			http.Error(w, "drain needs gossip mode (gossip.key)", http.StatusConflict)
			return
		}
		c.agent.Drain(*req.On)
		c.poke()
		writeJSON(w, c.agent.State())
	})
	mux.HandleFunc("POST /v1/weight", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Weight *float64 `json:"weight"`
			Reset  bool     `json:"reset"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || (req.Weight == nil) == !req.Reset {
			http.Error(w, `body must be {"weight": N} or {"reset": true}`, http.StatusBadRequest)
			return
		}
		c := n.clusterOrNil()
		if c == nil {
			http.Error(w, "weight needs gossip mode (gossip.key)", http.StatusConflict)
			return
		}
		if err := c.agent.SetWeight(req.Weight); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.poke()
		writeJSON(w, c.agent.State())
	})
	mux.HandleFunc("GET /v1/ranges", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		t := n.table
		n.mu.Unlock()
		if g := r.URL.Query().Get("group"); g != "" {
			gt, ok := n.Groups().Table(g)
			if !ok {
				http.Error(w, fmt.Sprintf("no group %q", g), http.StatusNotFound)
				return
			}
			t = gt
		}
		writeJSON(w, Ranges{TableHash: t.Hash, Intervals: t.Intervals()})
	})
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		max := 1000
		if v := r.URL.Query().Get("max"); v != "" {
			if _, err := fmt.Sscanf(v, "%d", &max); err != nil || max < 1 || max > 1000000 {
				http.Error(w, "max must be 1..1000000", http.StatusBadRequest)
				return
			}
		}
		n.mu.Lock()
		rt := n.runtime
		n.mu.Unlock()
		fs, err := rt.Flows(max)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, fs)
	})
	mux.HandleFunc("POST /v1/server", func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.health()) })
	mux.HandleFunc("GET /v1/groups", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.groupStatus()) })
	a := &admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}, path: path}
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

// bearer admits only requests carrying the token; the comparison takes the
// same time whatever the guess.
func bearer(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *admin) stop() {
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

func (n *Node) clusterOrNil() *cluster {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cluster
}

func (n *Node) status() Status {
	c := n.clusterOrNil()
	epoch := n.epoch()
	n.mu.Lock()
	s := Status{
		NodeID: n.cfg.NodeID, VIP: n.cfg.Cluster.VIP, Address: n.cfg.Interface.Address,
		UptimeSec: time.Since(n.started).Seconds(), Hugepages: n.hugepages,
		Epoch: epoch, TableHash: n.advertisedHash(), TableAge: time.Since(n.tableSince).Seconds(),
		OwnedBuckets: n.owned.Count(), ExtraBuckets: len(n.extra), Agreement: true,
		FailOpen: n.failOpen.Load(), Holding: n.holding,
	}
	counts := n.table.Count()
	for _, m := range n.table.Members {
		s.Members = append(s.Members, MemberStatus{ID: m.ID, Weight: m.Weight, Buckets: counts[m.ID],
			Share: float64(counts[m.ID]) / ranges.Buckets, Capacity: m.Weight, Availability: m.Weight, Agrees: true})
	}
	n.mu.Unlock()
	if c == nil {
		return s
	}
	s.Gossip = true
	st := c.agent.State()
	s.Capacity = &st
	gs := c.g.Stats()
	s.GossipStats = &gs
	s.Agreement, s.Disagree = c.agreement()
	byID := map[string]*MemberStatus{}
	for i := range s.Members {
		byID[s.Members[i].ID] = &s.Members[i]
	}
	for _, m := range c.g.Members() {
		ms := byID[m.Meta.NodeID]
		if ms == nil {
			s.Members = append(s.Members, MemberStatus{ID: m.Meta.NodeID})
			ms = &s.Members[len(s.Members)-1]
		}
		ms.Addr, ms.State, ms.Capacity, ms.Availability = m.Addr, m.State, m.Meta.Capacity, m.Meta.Availability
		ms.Health, ms.TableHash, ms.Agrees = m.Meta.Health, m.Meta.TableHash, m.Meta.TableHash == s.TableHash
		if ms.Health == "" {
			ms.Health = gossip.HealthHealthy
		}
	}
	return s
}

func (n *Node) stats() Stats {
	n.mu.Lock()
	rt, nic, tap := n.runtime, n.nic, n.tap
	n.mu.Unlock()
	ws := rt.Stats()
	tot, flows := dataplane.Totals(ws)
	s := Stats{NodeID: n.cfg.NodeID, Total: tot, Flows: flows, Workers: ws, Ports: map[string]PortStats{}}
	if st, err := nic.Stats(); err == nil {
		s.Ports["nic"] = PortStats{st.RxPackets, st.TxPackets, st.RxMissed, st.RxErrors, st.TxErrors, st.RxNoMbuf}
	}
	if st, err := tap.Stats(); err == nil {
		s.Ports["tap"] = PortStats{st.RxPackets, st.TxPackets, st.RxMissed, st.RxErrors, st.TxErrors, st.RxNoMbuf}
	}
	return s
}

// GroupStatus is one group in GET /v1/groups.
type GroupStatus struct {
	groups.Group
	TableHash string         `json:"table_hash"`
	Members   []MemberStatus `json:"members"`
	Local     bool           `json:"local"` // this node is a member
}

func (n *Node) groupStatus() []GroupStatus {
	gt := n.Groups()
	var out []GroupStatus
	for _, def := range gt.Defs() {
		tb, _ := gt.Table(def.Name)
		counts := tb.Count()
		gs := GroupStatus{Group: def, TableHash: tb.Hash}
		if gs.Policy == "" {
			gs.Policy = groups.ByHash
		}
		for _, m := range gt.Members(def.Name) {
			gs.Members = append(gs.Members, MemberStatus{ID: m.ID, Availability: m.Availability,
				Buckets: counts[m.ID], Share: float64(counts[m.ID]) / ranges.Buckets})
			gs.Local = gs.Local || m.ID == n.cfg.NodeID
		}
		out = append(out, gs)
	}
	return out
}

// Health is GET /v1/health: this node's checks and every member's health
// as gossiped.
type Health struct {
	NodeID        string         `json:"node_id"`
	Healthy       bool           `json:"healthy"`
	ServerRunning bool           `json:"server_running"`
	Checks        []health.State `json:"checks"`
	SlowStart     float64        `json:"slow_start_factor"`
	Members       []MemberHealth `json:"members"`
}

// MemberHealth is one member's health in this node's view.
type MemberHealth struct {
	ID           string  `json:"id"`
	Health       string  `json:"health"`
	Capacity     float64 `json:"capacity"`
	Availability float64 `json:"availability"`
	Buckets      int     `json:"buckets"`
}

func (n *Node) health() Health {
	h := Health{NodeID: n.cfg.NodeID, Healthy: true, ServerRunning: n.serverRunning(), SlowStart: 1}
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
		h.Members = append(h.Members, MemberHealth{ID: m.ID, Health: hl, Capacity: m.Capacity, Availability: m.Availability, Buckets: m.Buckets})
	}
	return h
}
