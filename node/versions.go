package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/handoff/local"
	"github.com/shoal-lb/shoal/versions/fetch"
	"github.com/shoal-lb/shoal/versions/rollout"
	"github.com/shoal-lb/shoal/versions/store"
	"github.com/shoal-lb/shoal/versions/table"
)

// The content distribution system's wiring (docs/versions.md): the
// storage area, the update table replicated by gossip, the object server
// peers fetch from, and the loop that runs this node's part of every
// rollout.

// versionsSvc is one node's part of the content distribution system.
type versionsSvc struct {
	n       *Node
	store   *store.Store
	table   *table.Table
	gossip  *table.Gossip
	fetcher *fetch.Fetcher
	objects *fetch.Server
	srv     *http.Server

	mu      sync.Mutex
	running map[string]bool      // paths with a fetch in flight
	retry   map[string]time.Time // paths whose last fetch failed: not before
	fails   map[string]uint64    // fetch failures by path
	last    map[string]rollout.Action

	wake   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openVersions opens the storage area and the update table, and writes
// this node's rows from what its store serves. It runs before gossip
// starts, which carries the table.
func (n *Node) openVersions() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.Content.Store, 0o755); err != nil {
		return inputErr("content.store: %v", err)
	}
	st, err := store.Open(cfg.Content.Store, store.Options{})
	if err != nil {
		return inputErr("content.store: %v", err)
	}
	tb, err := table.New(cfg.NodeID)
	if err != nil {
		st.Close()
		return inputErr("%v", err)
	}
	v := &versionsSvc{n: n, store: st, table: tb, fetcher: &fetch.Fetcher{Store: st},
		running: map[string]bool{}, retry: map[string]time.Time{}, fails: map[string]uint64{},
		last: map[string]rollout.Action{}, wake: make(chan struct{}, 1)}
	for _, p := range st.Paths() {
		if e, ok := st.Current(p); ok {
			if _, err := tb.SetOwnRow(p, table.Row{Version: e.Version, SHA256: e.SHA256, State: table.Available, Holds: st.Has(e.SHA256)}); err != nil {
				n.log.Warn("versions: a stored path does not fit the update table", "path", p, "err", err)
			}
		}
	}
	if cfg.Gossip.Enabled() {
		v.gossip = table.NewGossip(tb, 0)
	}
	n.versions = v
	return nil
}

// startVersions serves objects to peers and runs the rollout loop; after
// gossip started.
func (v *versionsSvc) start() error {
	n := v.n
	if v.gossip != nil && n.gossip != nil {
		g := n.gossip
		v.gossip.SetNumNodes(func() int { return len(g.Members()) })
	}
	v.objects = fetch.Handler(v.store, func(a netip.Addr) bool { _, ok := n.memberAt(a); return ok })
	addr := net.JoinHostPort(n.nodeAddr().String(), strconv.Itoa(n.cfg.Content.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return inputErr("content.port: %v", err)
	}
	v.srv = &http.Server{Handler: v.objects, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.wg.Add(2)
	go func() {
		defer v.wg.Done()
		if err := v.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("versions: object server", "err", err)
		}
	}()
	go func() {
		defer v.wg.Done()
		v.loop(ctx)
	}()
	return nil
}

func (v *versionsSvc) stop() {
	if v.cancel != nil {
		v.cancel()
		ctx, c := context.WithTimeout(context.Background(), time.Second)
		v.srv.Shutdown(ctx)
		c()
		v.wg.Wait()
	}
	v.store.Close()
}

func (v *versionsSvc) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// loop plans this node's next step for every published path whenever the
// table or the membership changes, and every second (retries, deaths).
func (v *versionsSvc) loop(ctx context.Context) {
	tsub := v.table.Subscribe()
	var gsub <-chan struct{}
	if v.n.gossip != nil {
		gsub = v.n.gossip.Subscribe()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	collect := time.NewTicker(time.Minute)
	defer collect.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tsub:
		case <-gsub:
		case <-v.wake:
		case <-tick.C:
		case <-collect.C:
			if n, err := v.store.Collect(); err != nil {
				v.n.log.Warn("versions: collect", "err", err)
			} else if n > 0 {
				v.n.log.Info("versions: collected unused objects", "removed", n)
			}
			continue
		}
		for _, p := range v.table.Paths() {
			v.step(ctx, p)
		}
	}
}

// members are the group's members as the rollout sees them.
func (v *versionsSvc) members(group string) []rollout.Member {
	gt := v.n.Groups()
	if gt == nil {
		return nil
	}
	var out []rollout.Member
	for _, m := range gt.Members(group) {
		out = append(out, rollout.Member{ID: m.ID, Alive: true, Serving: v.n.ctrl.Serving(m.ID)})
	}
	return out
}

// step runs Plan for one path and does what it says.
func (v *versionsSvc) step(ctx context.Context, p string) {
	pub, rows, ok := v.table.Content(p)
	if !ok {
		return
	}
	a := rollout.Plan(pub, v.members(pub.Group), rows, v.n.cfg.NodeID)
	v.mu.Lock()
	prev, seen := v.last[p]
	v.last[p] = a
	v.mu.Unlock()
	if !seen || prev.Kind != a.Kind || prev.Version != a.Version {
		v.n.log.Info("versions: rollout step", "path", p, "version", a.Version, "action", a.Kind.String(), "why", a.Why)
	}
	own := rows[v.n.cfg.NodeID]
	switch a.Kind {
	case rollout.StartUpdating:
		own.State = table.Updating
		v.setRow(p, own)
	case rollout.MarkUnavailable:
		own.State = table.Unavailable
		v.setRow(p, own)
	case rollout.Publish:
		v.publish(p, pub)
	case rollout.Fetch:
		if !v.claimFetch(p) {
			return
		}
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			defer func() {
				v.mu.Lock()
				delete(v.running, p)
				v.mu.Unlock()
				v.poke()
			}()
			v.fetch(ctx, p, pub, a)
		}()
	}
}

// claimFetch marks a fetch of p as running unless one is, or the last
// one failed too recently to try again.
func (v *versionsSvc) claimFetch(p string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.running[p] || time.Now().Before(v.retry[p]) {
		return false
	}
	v.running[p] = true
	return true
}

func (v *versionsSvc) setRow(p string, r table.Row) {
	if _, err := v.table.SetOwnRow(p, r); err != nil {
		v.n.log.Warn("versions: own row", "path", p, "err", err)
	}
}

// fetch gets pub's object from its holders, then either records that this
// node holds it (and switches in its turn) or, keeping serving as the last
// available server, switches at once.
func (v *versionsSvc) fetch(ctx context.Context, p string, pub table.Publication, a rollout.Action) {
	var peers []netip.AddrPort
	for _, id := range a.Sources {
		if addr, ok := v.n.peerAddr(id); ok && id != v.n.cfg.NodeID {
			peers = append(peers, netip.AddrPortFrom(addr, uint16(v.n.cfg.Content.Port)))
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err := v.fetcher.Fetch(fctx, pub.SHA256, pub.Size, peers)
	cancel()
	if err != nil {
		v.mu.Lock()
		v.fails[p]++
		v.retry[p] = time.Now().Add(2 * time.Second)
		v.mu.Unlock()
		v.n.log.Warn("versions: fetch failed; retrying", "path", p, "version", pub.Version, "sources", a.Sources, "err", err)
		return
	}
	if a.KeepServing {
		v.publish(p, pub)
		return
	}
	own := v.table.Rows(p)[v.n.cfg.NodeID]
	own.Version, own.SHA256, own.Holds, own.State = pub.Version, pub.SHA256, true, table.Updating
	v.setRow(p, own)
}

// publish switches the store to pub's version and says so in the table.
func (v *versionsSvc) publish(p string, pub table.Publication) {
	if err := v.store.Publish(p, pub.Version, pub.SHA256, pub.Size); err != nil {
		v.n.log.Warn("versions: publishing locally failed", "path", p, "version", pub.Version, "err", err)
		own := v.table.Rows(p)[v.n.cfg.NodeID]
		own.Holds = false
		v.setRow(p, own)
		return
	}
	v.setRow(p, table.Row{Version: pub.Version, SHA256: pub.SHA256, State: table.Available, Holds: true})
	v.n.log.Info("versions: serving a new version", "path", p, "version", pub.Version)
}

// Publish is POST /v1/content/publish: ingest the body into the store and
// publish it to the group, this node being the first holder.
func (v *versionsSvc) Publish(p, group string, threshold, batch int, body *http.Request) (table.Publication, int, error) {
	if err := table.ValidPath(p); err != nil {
		return table.Publication{}, http.StatusBadRequest, err
	}
	if threshold < table.MinThreshold || threshold > table.MaxThreshold {
		return table.Publication{}, http.StatusBadRequest, fmt.Errorf("threshold: %d must be between %d and %d (percent)", threshold, table.MinThreshold, table.MaxThreshold)
	}
	if batch < 1 || batch > table.MaxBatch {
		return table.Publication{}, http.StatusBadRequest, fmt.Errorf("batch: %d must be between 1 and %d", batch, table.MaxBatch)
	}
	known := false
	for _, g := range v.n.cfg.Groups {
		known = known || g.Name == group
	}
	if !known {
		return table.Publication{}, http.StatusBadRequest, fmt.Errorf("group: %q is not a defined group", group)
	}
	sha, size, err := v.store.Ingest(body.Body)
	if err != nil {
		return table.Publication{}, http.StatusBadRequest, fmt.Errorf("reading the content: %v", err)
	}
	pub, err := v.table.SetPublication(table.Publication{Path: p, SHA256: sha, Size: size, Group: group, Threshold: threshold, Batch: batch})
	if err != nil {
		return table.Publication{}, http.StatusConflict, err
	}
	// This node holds the object from now on: the rollout lists the
	// publisher among the sources whatever its row says, and its serving
	// state follows the rollout order like anyone's (its own fetch finds
	// the object already there).
	v.n.log.Info("versions: published", "path", p, "version", pub.Version, "sha256", hex.EncodeToString(sha[:]), "size", size, "group", group, "threshold", threshold, "batch", batch)
	v.poke()
	return pub, http.StatusOK, nil
}

// published is the local server's view of published content.
func (v *versionsSvc) published(r *http.Request) local.Published {
	p := path.Clean("/" + r.URL.Path)
	_, rows, ok := v.table.Content(p)
	if !ok {
		return local.Published{}
	}
	own := rows[v.n.cfg.NodeID]
	if own.State != table.Available || own.Version == 0 {
		return local.Published{Status: local.PublishedElsewhere}
	}
	f, e, ok, err := v.store.Serve(p)
	if !ok || err != nil || e.Version != own.Version {
		if f != nil {
			f.Close()
		}
		if err != nil {
			// Corrupt or missing: never served. Say so, and fetch it again.
			v.n.log.Warn("versions: stored object cannot be served; fetching it again", "path", p, "err", err)
			v.setRow(p, table.Row{Version: own.Version, SHA256: own.SHA256, State: table.Unavailable, Holds: false})
			v.poke()
		}
		return local.Published{Status: local.PublishedElsewhere}
	}
	var mod time.Time
	if fi, err := f.Stat(); err == nil {
		mod = fi.ModTime()
	}
	return local.Published{Status: local.PublishedHere, File: f, Version: e.Version, ETag: ETag(e.Version, e.SHA256),
		ModTime: mod, Name: path.Base(p)}
}

// ETag is the entity tag of a published version: its number and the
// start of its SHA-256, so equal tags mean equal bytes.
func ETag(version uint64, sha [32]byte) string {
	return fmt.Sprintf(`"v%d-%s"`, version, hex.EncodeToString(sha[:8]))
}

// status is GET /v1/content.
func (v *versionsSvc) status(only string) api.Content {
	out := api.Content{NodeID: v.n.cfg.NodeID, Paths: []api.ContentPath{}}
	snap := v.table.Snapshot()
	var paths []string
	for p := range snap.Pubs {
		if only == "" || p == only {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		pub := snap.Pubs[p]
		rows := snap.Rows[p]
		members := v.members(pub.Group)
		reached, share := rollout.Threshold(pub, members, rows)
		cp := api.ContentPath{Publication: publicationOf(pub), ThresholdReached: reached, Share: share}
		order := rollout.Order(pub, members)
		round := map[string]int{}
		for i, id := range order {
			round[id] = i / max(pub.Batch, 1)
		}
		alive := map[string]bool{}
		for _, m := range members {
			alive[m.ID] = true
		}
		var ids []string
		for id := range rows {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			r := rows[id]
			ns := api.ContentNode{Node: id, Version: r.Version, State: r.State.String(), Holds: r.Holds, Alive: alive[id], Round: -1}
			if rd, ok := round[id]; ok {
				ns.Round = rd
			}
			cp.Nodes = append(cp.Nodes, ns)
			if r.Version == pub.Version && r.State == table.Available && alive[id] {
				cp.Done++
			}
		}
		cp.Members = len(members)
		v.mu.Lock()
		cp.FetchFailures = v.fails[p]
		v.mu.Unlock()
		out.Paths = append(out.Paths, cp)
	}
	fs := v.fetcher.Stats()
	out.Fetch = api.ContentFetch{Fetches: fs.Fetches, Fetched: fs.Fetched, Failed: fs.Failed, Bytes: fs.Bytes,
		BytesPerSec: fs.Rate, Failures: map[string]uint64{"dial": fs.Dial, "http_status": fs.HTTPStatus, "stall": fs.Stall,
			"truncated": fs.Truncated, "checksum": fs.Checksum, "io": fs.IO, "cancelled": fs.Cancelled}}
	for k, val := range out.Fetch.Failures {
		if val == 0 {
			delete(out.Fetch.Failures, k)
		}
	}
	ts := v.table.Stats()
	out.TableRejected = ts.Rejected
	return out
}

// publicationOf is a publication as the admin API shows it.
func publicationOf(pub table.Publication) api.Publication {
	return api.Publication{Path: pub.Path, Version: pub.Version, SHA256: hex.EncodeToString(pub.SHA256[:]),
		Size: pub.Size, Group: pub.Group, Threshold: pub.Threshold, Batch: pub.Batch, Publisher: pub.Publisher}
}
