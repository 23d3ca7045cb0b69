package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/api"
)

// Source is the node as the status page reads it: the admin API's own
// answers. Every method must be safe for concurrent use.
type Source interface {
	Status() api.Status
	Health() api.Health
	Stats() api.Stats
	Groups() []api.GroupStatus
	// Ranges is the cluster table (group "") or a group's; false when the
	// group does not exist.
	Ranges(group string) (api.Ranges, bool)
}

const (
	// PollInterval is how often a stream looks for a change; a new table
	// reaches the page within it.
	PollInterval = 100 * time.Millisecond
	// HeartbeatInterval bounds the time between two events of a stream,
	// so the page's rates stay fresh and a dead node shows as one.
	HeartbeatInterval = time.Second
	// MaxStreams bounds the concurrent event streams; each costs a
	// goroutine and a status build every PollInterval.
	MaxStreams = 16
	// writeTimeout drops a stream whose reader stopped reading.
	writeTimeout = 10 * time.Second
)

//go:embed assets
var assets embed.FS

// UI serves the status page and its feed. Create it with New.
type UI struct {
	src          Source
	poll, beat   time.Duration
	slots        chan struct{}
	done         chan struct{}
	closeOnce    sync.Once
	mu           sync.Mutex
	closed       bool
	streams      sync.WaitGroup
	staticAssets http.Handler
}

// New returns the status page of src.
func New(src Source) *UI {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &UI{src: src, poll: PollInterval, beat: HeartbeatInterval,
		slots: make(chan struct{}, MaxStreams), done: make(chan struct{}),
		staticAssets: http.StripPrefix("/ui/", http.FileServerFS(sub))}
}

// Mount registers the page (api.PathUI and /ui/), api.PathEvents and
// api.PathSnapshot on mux; every route is GET (and so HEAD).
func (u *UI) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", u.page)
	mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		w.Header().Set("Cache-Control", "no-cache")
		u.staticAssets.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET "+api.PathEvents, u.events)
	mux.HandleFunc("GET "+api.PathSnapshot, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(Build(u.src))
	})
}

// Close ends every event stream and waits until none reads the node.
// Later streams are refused with 503.
func (u *UI) Close() {
	u.closeOnce.Do(func() {
		u.mu.Lock()
		u.closed = true
		u.mu.Unlock()
		close(u.done)
	})
	u.streams.Wait()
}

// secure sets the headers that keep the page to its own origin: its
// scripts and styles come from the node only, and no other site may frame
// it.
func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// page serves index.html with a snapshot in it, so the first paint (and a
// browser's --dump-dom or --screenshot, taken at the load event) already
// shows the cluster; the event stream takes over from there. json.Marshal
// escapes <, > and &, so the JSON cannot end the script element.
func (u *UI) page(w http.ResponseWriter, r *http.Request) {
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	snap, err := json.Marshal(Build(u.src))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = bytes.Replace(b, []byte("<!--snapshot-->"),
		append(append([]byte(`<script type="application/json" id="snapshot">`), snap...), "</script>"...), 1)
	secure(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// enter admits a stream if the UI is open and a slot is free.
func (u *UI) enter() (ok bool, why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false, "the node is stopping"
	}
	select {
	case u.slots <- struct{}{}:
	default:
		return false, fmt.Sprintf("%d event streams are open already; close one", MaxStreams)
	}
	u.streams.Add(1)
	return true, ""
}

func (u *UI) leave() {
	<-u.slots
	u.streams.Done()
}

// events is GET /v1/events: a snapshot at once, then one on every change
// and at least one every heartbeat, until the client goes or Close.
func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	ok, why := u.enter()
	if !ok {
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	defer u.leave()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a reverse proxy must not buffer the stream
	w.WriteHeader(http.StatusOK)
	// retry: the browser reconnects 2 s after a lost stream (a restart).
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	var (
		seq     uint64
		lastKey string
		lastAt  time.Time
		sent    = map[string]string{} // table → hash whose runs this stream sent
	)
	tick := time.NewTicker(u.poll)
	defer tick.Stop()
	for {
		st, gs := u.src.Status(), u.src.Groups()
		if key := changeKey(st, gs); key != lastKey || time.Since(lastAt) >= u.beat {
			seq++
			snap := build(u.src, st, gs)
			snap.Seq = seq
			for i := range snap.Tables {
				t := &snap.Tables[i]
				name := t.Name
				if t.Group {
					name = "group/" + name // a group may be called "cluster"
				}
				if h, ok := sent[name]; ok && h == t.TableHash {
					t.Runs, t.Unchanged = nil, true
				} else {
					sent[name] = t.TableHash
				}
			}
			b, err := json.Marshal(snap)
			if err != nil {
				return
			}
			rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprintf(w, "event: %s\nid: %d\ndata: %s\n\n", api.EventSnapshot, seq, b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			lastKey, lastAt = key, time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-u.done:
			return
		case <-tick.C:
		}
	}
}
