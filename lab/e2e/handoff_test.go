package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/handoff/wire"
	"github.com/shoal-lb/shoal/lab"
)

// The e2e tests of issue 12 (the reading module and connection handoff),
// on the lab's groups preset: html = {n1, n2} (*.html), cgi = {n2, n3}
// (*.cgi, /upload: the lab app on n2 and n3), session cookie shoal_session,
// HTTPS on VIP:443. One lab serves every subtest (they run in order; the
// last one kills n3). Real clients: Go's net/http with a transport that
// counts every failure kind, raw TCP where the bytes on the wire matter,
// curl and openssl s_client where the issue names them.

// headMS is the nodes' handoff.head_ms in these tests: a head that never
// completes must get 408 within it.
const headMS = 1500

// failures counts what went wrong at the client, by kind.
type failures struct {
	mu       sync.Mutex
	kinds    map[string]int
	examples []string
}

func (f *failures) add(kind, detail string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kinds == nil {
		f.kinds = map[string]int{}
	}
	f.kinds[kind]++
	if len(f.examples) < 10 {
		f.examples = append(f.examples, kind+": "+detail)
	}
}

func (f *failures) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.kinds {
		n += v
	}
	return n
}

func (f *failures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.kinds) == 0 {
		return "no failures"
	}
	return fmt.Sprintf("%v; e.g. %s", f.kinds, strings.Join(f.examples, " | "))
}

// classify names a network error: refused, reset (RST, or a write into a
// connection the peer reset), timeout, eof (the peer closed early) or error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), strings.Contains(err.Error(), "connection reset"):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "error"
}

// watchedConn records every read or write error of a client connection,
// including those on an idle keep-alive connection (the transport keeps a
// read pending on it, so a reset there surfaces here even though no request
// sees it). A clean close by the server (EOF) is not a failure; errors after
// the client closed the connection itself are ignored.
type watchedConn struct {
	net.Conn
	f      *failures
	closed atomic.Bool
}

func (c *watchedConn) note(op string, err error) {
	if err != nil && !c.closed.Load() && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.f.add("conn_"+classify(err), op+" "+c.Conn.LocalAddr().String()+": "+err.Error())
	}
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.note("read", err)
	return n, err
}

func (c *watchedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.note("write", err)
	return n, err
}

func (c *watchedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// labClient is an HTTP client in the client namespace whose connections
// are watched; keepAlive false makes every request a fresh connection.
// dials counts the connections it opened.
type labClient struct {
	*http.Client
	f     *failures
	dials atomic.Int64
	// local is the local address of the last connection dialled.
	local atomic.Value
}

func newLabClient(f *failures, keepAlive bool) *labClient {
	lc := &labClient{f: f}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := lab.DialContext(ctx, "client", network, addr)
			if err != nil {
				f.add("dial_"+classify(err), err.Error())
				return nil, err
			}
			lc.dials.Add(1)
			lc.local.Store(c.LocalAddr().String())
			return &watchedConn{Conn: c, f: f}, nil
		},
		Proxy:                 nil,
		DisableKeepAlives:     !keepAlive,
		DisableCompression:    true,
		MaxConnsPerHost:       1,
		MaxIdleConnsPerHost:   1,
		ResponseHeaderTimeout: 15 * time.Second,
	}
	if !keepAlive {
		tr.MaxConnsPerHost = 0
	}
	lc.Client = &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return lc
}

// reply is one answered request.
type reply struct {
	code      int
	node      string // X-Shoal-Node
	version   string // X-Shoal-Version (published content)
	handoff   string // X-Shoal-Handoff (origin node), "" if served where accepted
	app       string // X-Shoal-App
	setCookie []string
	body      []byte
	sum       string // hex SHA-256 of the body
	err       error
}

// get makes one request and reads the whole body, counting failures; a
// request error is counted by kind, a body that breaks off as body_<kind>.
func (lc *labClient) get(method, url string, hdr http.Header, body io.Reader) reply {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := lc.Do(req)
	if err != nil {
		lc.f.add(classify(err), err.Error())
		return reply{err: err}
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(h, &limitedBuffer{&buf, 1 << 16}), resp.Body)
	r := reply{code: resp.StatusCode, node: resp.Header.Get("X-Shoal-Node"), version: resp.Header.Get("X-Shoal-Version"), handoff: resp.Header.Get("X-Shoal-Handoff"),
		app: resp.Header.Get("X-Shoal-App"), setCookie: resp.Header.Values("Set-Cookie"), body: buf.Bytes(), sum: hex.EncodeToString(h.Sum(nil))}
	if err != nil {
		lc.f.add("body_"+classify(err), err.Error())
		r.err = err
	}
	return r
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// parallel runs fn(i) for i in [0, n), workers at a time.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// handoffCounters reads node id's GET /v1/handoffs.
func handoffCounters(t *testing.T, id string) api.Handoffs {
	t.Helper()
	var h api.Handoffs
	if err := api.Get(lab.SocketPath(id), api.PathHandoffs, &h); err != nil {
		t.Fatalf("%s: GET %s: %v", id, api.PathHandoffs, err)
	}
	return h
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// watchBothResets counts, in the client namespace, TCP resets between the
// client and the VIP in both directions (the suite's own watcher counts
// only those from the VIP).
func watchBothResets(t *testing.T) {
	t.Helper()
	rules := `table inet shoal_handoff_watch {
	counter rst_in { }
	counter rst_out { }
	chain in {
		type filter hook prerouting priority -400; policy accept;
		ip saddr ` + lab.VIP + ` tcp flags & rst == rst counter name rst_in
	}
	chain out {
		type filter hook output priority -400; policy accept;
		ip daddr ` + lab.VIP + ` tcp flags & rst == rst counter name rst_out
	}
}
`
	runStdin(t, "client", rules, "nft", "-f", "-")
}

// bothResets returns the resets seen so far from and to the VIP.
func bothResets(t *testing.T) (in, out uint64) {
	t.Helper()
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	raw := run(t, "client", "nft", "-j", "list", "counters", "table", "inet", "shoal_handoff_watch")
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("parsing nft counters: %v: %s", err, raw)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil && o.Counter.Name == "rst_in" {
			in = o.Counter.Packets
		} else if o.Counter != nil && o.Counter.Name == "rst_out" {
			out = o.Counter.Packets
		}
	}
	return in, out
}

// noResets runs fn and fails t if any reset crossed between the client and
// the VIP meanwhile.
func noResets(t *testing.T, fn func()) {
	t.Helper()
	in0, out0 := bothResets(t)
	fn()
	in1, out1 := bothResets(t)
	if in1 != in0 || out1 != out0 {
		t.Errorf("resets at the client: %d from the VIP, %d to it; want none", in1-in0, out1-out0)
	}
}

// capped reports at most 10 errors of a kind in full and counts the rest,
// so a broken node does not bury the log under 300 identical lines.
type capped struct {
	t *testing.T
	n int
}

func (c *capped) Errorf(format string, a ...any) {
	c.t.Helper()
	if c.n++; c.n <= 10 {
		c.t.Errorf(format, a...)
	}
}

func (c *capped) done() {
	c.t.Helper()
	if c.n > 10 {
		c.t.Errorf("... and %d more errors like these", c.n-10)
	}
}

var appBody = regexp.MustCompile(`^app\.cgi node=(n[0-9]+) count=([0-9]+)\n$`)

// checkApp checks an answer of the lab app: 200, from the app of the node
// named in X-Shoal-Node, a member of group cgi.
func checkApp(r reply) error {
	if r.err != nil {
		return r.err
	}
	m := appBody.FindSubmatch(r.body)
	switch {
	case r.code != 200:
		return fmt.Errorf("status %d, body %q", r.code, r.body)
	case r.node != "n2" && r.node != "n3":
		return fmt.Errorf("X-Shoal-Node %q; group cgi is {n2, n3}", r.node)
	case m == nil || string(m[1]) != r.node || r.app != r.node:
		return fmt.Errorf("body %q, X-Shoal-App %q, from X-Shoal-Node %s", r.body, r.app, r.node)
	case r.handoff != "" && (r.handoff == r.node || !slices.Contains([]string{"n1", "n2", "n3"}, r.handoff)):
		return fmt.Errorf("X-Shoal-Handoff %q on an answer of %s", r.handoff, r.node)
	}
	return nil
}

// TestHandoff: the "Must show" list of issue 12 on `lab up --nodes 3
// --preset groups`.
func TestHandoff(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, Preset: lab.PresetGroups, Configure: func(id string, c *config.Config) {
		c.Handoff.FirstBytesMS = 1000
		c.Handoff.HeadMS = headMS
	}})
	watchBothResets(t)
	for _, id := range l.NodeIDs() {
		var h api.Handoffs
		if err := api.Get(lab.SocketPath(id), api.PathHandoffs, &h); err != nil {
			t.Errorf("%s: GET %s: %v", id, api.PathHandoffs, err)
		} else if !h.Moves {
			t.Errorf("%s: moves false: the lab's nodes have the cluster key and must move connections", id)
		}
	}
	vip := "http://" + lab.VIP

	// 300 GET /app.cgi on fresh connections: only n2 and n3 answer, from
	// their app; at least a third arrive by handoff (n1 accepts about a
	// third of all connections and holds no cgi member: all of those must
	// move; n2 and n3 hand over part of theirs as the group table says);
	// no failure of any kind and no reset either way.
	t.Run("AppCGI", func(t *testing.T) {
		var f failures
		c := newLabClient(&f, false)
		res := make([]reply, 300)
		noResets(t, func() {
			parallel(len(res), 6, func(i int) { res[i] = c.get("GET", vip+"/app.cgi", nil, nil) })
		})
		by, handed, origins := map[string]int{}, 0, map[string]int{}
		e := &capped{t: t}
		defer e.done()
		for i, r := range res {
			if err := checkApp(r); err != nil {
				e.Errorf("request %d: %v", i, err)
				continue
			}
			by[r.node]++
			if r.handoff != "" {
				handed++
				origins[r.handoff+"→"+r.node]++
			}
		}
		t.Logf("served by %v; %d of %d by handoff (%v); %s", by, handed, len(res), origins, f.String())
		if f.total() != 0 {
			t.Errorf("client failures: %s", f.String())
		}
		if handed*3 < len(res) {
			t.Errorf("%d of %d arrived by handoff; want at least a third", handed, len(res))
		}
		if by["n2"] == 0 || by["n3"] == 0 {
			t.Errorf("served by %v; want both members of cgi", by)
		}
	})

	// 50 POST /upload, each a raw TCP client writing the head and a 1 MiB
	// body in one write (so the body is in flight, some of it in the
	// socket's receive queue, when the front peeks and moves the
	// connection): every answer is the body's SHA-256 and length.
	t.Run("Upload", func(t *testing.T) {
		var f failures
		handed := 0
		var mu sync.Mutex
		noResets(t, func() {
			parallel(50, 5, func(i int) {
				body, _ := io.ReadAll(lab.ContentBytes(fmt.Sprintf("upload/%d", i), 1<<20))
				s := sha256.Sum256(body)
				want := fmt.Sprintf("%s %d\n", hex.EncodeToString(s[:]), len(body))
				code, hdr, got, err := rawRequest(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", lab.VIP, len(body)), body)
				if err != nil {
					f.add(classify(err), fmt.Sprintf("upload %d: %v", i, err))
					return
				}
				node := hdr.Get("X-Shoal-Node")
				if code != 200 || string(got) != want || (node != "n2" && node != "n3") {
					f.add("answer", fmt.Sprintf("upload %d: %d from %q: %q, want %q", i, code, node, got, want))
					return
				}
				if hdr.Get("X-Shoal-Handoff") != "" {
					mu.Lock()
					handed++
					mu.Unlock()
				}
			})
		})
		t.Logf("50 uploads of 1 MiB: %d by handoff; %s", handed, f.String())
		if f.total() != 0 {
			t.Errorf("failures: %s", f.String())
		}
		if handed == 0 {
			t.Error("no upload arrived by handoff")
		}
	})

	// /app.cgi then /obj/100m on one keep-alive connection: the 100 MiB
	// body is byte-identical (SHA-256), 20 more requests succeed on the
	// same connection, all answered by the node that took it.
	t.Run("KeepAlive", func(t *testing.T) {
		var f failures
		c := newLabClient(&f, true)
		defer c.CloseIdleConnections()
		noResets(t, func() {
			first := c.get("GET", vip+"/app.cgi", nil, nil)
			if err := checkApp(first); err != nil {
				t.Fatalf("/app.cgi: %v", err)
			}
			big := c.get("GET", vip+"/obj/100m", nil, nil)
			want, _ := lab.ContentSHA256("obj/100m")
			if big.code != 200 || big.sum != want || big.node != first.node {
				t.Errorf("/obj/100m: %d from %s (connection on %s), sha256 %s, want %s", big.code, big.node, first.node, big.sum, want)
			}
			for i := 0; i < 20; i++ {
				path := []string{"/app.cgi", "/obj/1k", "/"}[i%3]
				r := c.get("GET", vip+path, nil, nil)
				name := map[string]string{"/obj/1k": "obj/1k", "/": "index.html"}[path]
				ok := r.err == nil && r.code == 200 && r.node == first.node
				if name != "" {
					s, _ := lab.ContentSHA256(name)
					ok = ok && r.sum == s
				} else {
					ok = ok && checkApp(r) == nil
				}
				if !ok {
					t.Errorf("request %d (%s) on the connection: %d from %s (%v), want 200 from %s", i, path, r.code, r.node, r.err, first.node)
				}
			}
			t.Logf("connection taken by %s (handoff from %q)", first.node, first.handoff)
		})
		if n := c.dials.Load(); n != 1 {
			t.Errorf("%d connections dialled; want one for all 22 requests", n)
		}
		if f.total() != 0 {
			t.Errorf("failures: %s", f.String())
		}
	})

	// 100 requests carrying one shoal_session cookie, each on a fresh
	// connection (so each lands on any node first), all reach the node
	// whose app set it; the app sees its cookie (no new Set-Cookie).
	t.Run("Session", func(t *testing.T) {
		var f failures
		c := newLabClient(&f, false)
		first := c.get("GET", vip+"/app.cgi", nil, nil)
		if err := checkApp(first); err != nil {
			t.Fatal(err)
		}
		var cookie string
		for _, sc := range first.setCookie {
			if v, ok := strings.CutPrefix(sc, lab.SessionCookie+"="); ok {
				cookie, _, _ = strings.Cut(v, ";")
			}
		}
		if node, _, ok := strings.Cut(cookie, "~"); !ok || node != first.node {
			t.Fatalf("Set-Cookie %q from %s; want %s=%s~<value>", first.setCookie, first.node, lab.SessionCookie, first.node)
		}
		res := make([]reply, 100)
		hdr := http.Header{"Cookie": {lab.SessionCookie + "=" + cookie}}
		noResets(t, func() {
			parallel(len(res), 5, func(i int) { res[i] = c.get("GET", vip+"/app.cgi", hdr, nil) })
		})
		handed := 0
		e := &capped{t: t}
		defer e.done()
		for i, r := range res {
			if err := checkApp(r); err != nil || r.node != first.node || len(r.setCookie) != 0 {
				e.Errorf("request %d: %v, node %s (session of %s), Set-Cookie %q", i, err, r.node, first.node, r.setCookie)
			}
			if r.handoff != "" {
				handed++
			}
		}
		t.Logf("session of %s: %d of 100 moved there by handoff; %s", first.node, handed, f.String())
		if handed == 0 {
			t.Error("no request moved to the session's node: the test proved nothing")
		}
		if f.total() != 0 {
			t.Errorf("failures: %s", f.String())
		}
	})

	// /page.html exists only on n1 and n2 (group html): every answer comes
	// from one of them with the right bytes.
	t.Run("Page", func(t *testing.T) {
		var f failures
		c := newLabClient(&f, false)
		res := make([]reply, 60)
		noResets(t, func() {
			parallel(len(res), 5, func(i int) { res[i] = c.get("GET", vip+"/page.html", nil, nil) })
		})
		handed, by := 0, map[string]int{}
		e := &capped{t: t}
		defer e.done()
		for i, r := range res {
			if r.err != nil || r.code != 200 || (r.node != "n1" && r.node != "n2") || r.sum != lab.PageSHA256() {
				e.Errorf("request %d: %d from %q (%v), sha256 %s", i, r.code, r.node, r.err, r.sum)
			}
			by[r.node]++
			if r.handoff != "" {
				handed++
			}
		}
		t.Logf("/page.html served by %v, %d by handoff", by, handed)
		if handed == 0 {
			t.Error("no /page.html request was handed off (n3 accepts about a third)")
		}
		if f.total() != 0 {
			t.Errorf("failures: %s", f.String())
		}
	})

	t.Run("BadHeads", func(t *testing.T) { testBadHeads(t, l) })
	t.Run("TLS", func(t *testing.T) { testTLS(t) })
	t.Run("ForgedFrame", func(t *testing.T) { testForgedFrame(t) })
	// Last: it kills n3.
	t.Run("KillDestination", func(t *testing.T) { testKillDestination(t) })
}

// rawRequest sends head and body on a fresh connection from the client
// namespace in one write and reads the answer (after any 1xx).
func rawRequest(head string, body []byte) (code int, hdr http.Header, got []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := lab.DialContext(ctx, "client", "tcp", lab.VIP+":80")
	if err != nil {
		return 0, nil, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(append([]byte(head), body...)); err != nil {
		return 0, nil, nil, err
	}
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, nil, nil, err
		}
		if resp.StatusCode >= 200 {
			got, err = io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header, got, err
		}
	}
}

// testBadHeads: a head over 16 KiB gets 431, a head that never completes
// 408 within handoff.head_ms (not before it, and at most a second after),
// garbage 400; each is counted by reason on the node that accepted the
// connection (predicted from the range table by the client port), and each
// connection is then closed by the node (nothing hangs).
func testBadHeads(t *testing.T, l *lab.Lab) {
	tb, seed := tableOf(t, l)
	cases := []struct {
		name, send, reason string
		code               int
	}{
		{"too large", "GET / HTTP/1.1\r\nHost: " + lab.VIP + "\r\nX-Pad: " + strings.Repeat("a", 17<<10) + "\r\n\r\n", "too_large", 431},
		{"never completes", "GET / HTTP/1.1\r\nHost: " + lab.VIP + "\r\n", "head_timeout", 408},
		{"garbage", "HELLO\r\n\r\n", "request_line", 400},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port := 23100 + i
			owner := ownerOfPort(tb, seed, port)
			before := handoffCounters(t, owner).Refused[tc.reason]
			c, _, err := dialFrom(port, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			go c.Write([]byte(tc.send)) // a refusal may come before all of it is read
			c.SetDeadline(time.Now().Add(headMS*time.Millisecond + 5*time.Second))
			br := bufio.NewReader(c)
			code, _, err := readHead(br)
			took := time.Since(start)
			if err != nil || code != tc.code {
				t.Fatalf("answer %d (%v) after %v; want %d", code, err, took, tc.code)
			}
			if tc.code == 408 {
				lo, hi := headMS*time.Millisecond, headMS*time.Millisecond+time.Second
				if took < lo || took > hi {
					t.Errorf("408 after %v; want within [%v, %v] (handoff.head_ms %d)", took, lo, hi, headMS)
				}
			}
			// The node closes the connection after its answer.
			if _, err := io.Copy(io.Discard, br); err != nil && classify(err) == "timeout" {
				t.Errorf("the connection stays open after the %d", tc.code)
			}
			waitFor(t, 3*time.Second, fmt.Sprintf("%s's refused[%s] to count it", owner, tc.reason), func() bool {
				return handoffCounters(t, owner).Refused[tc.reason] == before+1
			})
			t.Logf("%d after %v, counted by %s as %s", code, took.Round(time.Millisecond), owner, tc.reason)
		})
	}
}

// sclient runs openssl s_client from the client namespace with the lab
// certificate as the only trust anchor, sends one HTTP request and returns
// whether the session was resumed and the answer's X-Shoal-Node and
// X-Shoal-Handoff.
func sclient(t *testing.T, sni, path string, sess []string) (reused bool, node, handoff string) {
	t.Helper()
	argv := append([]string{"openssl", "s_client", "-connect", lab.VIP + ":443", "-servername", sni,
		"-CAfile", lab.CertPath, "-verify_return_error", "-ign_eof"}, sess...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := lab.Exec(ctx, "client", argv...)
	cmd.Stdin = strings.NewReader("GET " + path + " HTTP/1.1\r\nHost: " + sni + "\r\nConnection: close\r\n\r\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s\n%s", strings.Join(argv, " "), err, tail(out.String(), 1500), errb.String())
	}
	s := out.String()
	switch {
	case strings.Contains(s, "\nReused, "):
		reused = true
	case strings.Contains(s, "\nNew, "):
	default:
		t.Fatalf("no New/Reused line from s_client:\n%s", tail(s, 1500))
	}
	if !strings.Contains(s, "HTTP/1.1 200") {
		t.Fatalf("no 200 over TLS:\n%s", tail(s, 1500))
	}
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch strings.ToLower(k) {
		case "x-shoal-node":
			node = strings.TrimSpace(v)
		case "x-shoal-handoff":
			handoff = strings.TrimSpace(v)
		}
	}
	return reused, node, handoff
}

// testTLS: a session saved by openssl s_client (-sess_out) and offered
// again (-sess_in) is resumed and lands on the node that issued it, ten
// times from fresh connections (so some are accepted elsewhere and must be
// moved); and SNI cgi.shoal.lab routes to group cgi's members.
func testTLS(t *testing.T) {
	sess := t.TempDir() + "/sess.pem"
	reused, issuer, _ := sclient(t, lab.LabDomain, "/", []string{"-sess_out", sess})
	if reused || issuer == "" {
		t.Fatalf("first handshake: reused %v, node %q", reused, issuer)
	}
	moved := 0
	for i := 0; i < 10; i++ {
		reused, node, handoff := sclient(t, lab.LabDomain, "/", []string{"-sess_in", sess})
		if !reused || node != issuer {
			t.Errorf("resumption %d: reused %v on %s; want reused on %s, the issuer", i, reused, node, issuer)
		}
		if handoff != "" {
			moved++
		}
	}
	t.Logf("session issued by %s; %d of 10 resumptions moved there by handoff", issuer, moved)
	if moved == 0 {
		t.Error("no resumption was moved to the issuer: the test proved nothing")
	}

	// SNI routing: group cgi has hosts [cgi.shoal.lab] in the preset.
	by, moved := map[string]int{}, 0
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := lab.Exec(ctx, "client", "curl", "-sS", "--max-time", "10", "--cacert", lab.CertPath,
			"--resolve", lab.CGIHost+":443:"+lab.VIP, "-o", "/dev/null",
			"-w", "%{http_code} %header{x-shoal-node} %header{x-shoal-handoff}", "https://"+lab.CGIHost+"/app.cgi")
		out, err := cmd.Output()
		cancel()
		f := strings.Fields(string(out))
		if err != nil || len(f) < 2 || f[0] != "200" || (f[1] != "n2" && f[1] != "n3") {
			t.Errorf("https://%s/app.cgi: %q %v; want 200 from n2 or n3", lab.CGIHost, out, err)
			continue
		}
		by[f[1]]++
		if len(f) == 3 {
			moved++
		}
	}
	t.Logf("SNI %s: served by %v, %d of 20 by handoff", lab.CGIHost, by, moved)
	if moved == 0 {
		t.Errorf("no connection with SNI %s was handed off at its ClientHello (is hosts: [%s] in group cgi?)", lab.CGIHost, lab.CGIHost)
	}
}

// testForgedFrame: a client connection is open on the node that serves it;
// a HANDOFF frame naming that very connection, sealed under a wrong key,
// is sent to the other cgi member's handoff port (7947) from the client
// namespace. The node refuses it (never answers ACCEPT), counts it, and
// the client's connection goes on being served where it was, while fresh
// connections made at the same time are served too.
func testForgedFrame(t *testing.T) {
	var f failures
	c := newLabClient(&f, true)
	defer c.CloseIdleConnections()
	first := c.get("GET", "http://"+lab.VIP+"/app.cgi", nil, nil)
	if err := checkApp(first); err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddrPort(c.local.Load().(string))
	target := "n2"
	if first.node == "n2" {
		target = "n3"
	}
	k, _ := strconv.Atoi(target[1:])
	before := sum(handoffCounters(t, target).ChannelRefused)

	key, err := wire.DeriveKey([]byte("not-the-lab-cluster-key-at-all!!"))
	if err != nil {
		t.Fatal(err)
	}
	frame, err := wire.NewEndpoint(key, "n1", 0, nil).Seal(target, 1, &wire.Handoff{
		Client: local, VIP: netip.MustParseAddrPort(lab.VIP + ":80"), Reason: wire.ReasonGroup, Group: "cgi",
		State: wire.TCPState{SendSeq: 1000, RecvSeq: 2000, RecvQueue: []byte("GET /app.cgi HTTP/1.1\r\nHost: x\r\n\r\n"), MSS: 1460},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Fresh clients at the same time as the forgery.
	var g failures
	fresh := newLabClient(&g, false)
	res := make([]reply, 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		parallel(len(res), 4, func(i int) { res[i] = fresh.get("GET", "http://"+lab.VIP+"/app.cgi", nil, nil) })
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := lab.DialContext(ctx, "client", "tcp", net.JoinHostPort(lab.NodeIP(k), "7947"))
	if err != nil {
		t.Fatalf("dialling %s's handoff channel: %v", target, err)
	}
	defer ch.Close()
	if _, err := ch.Write(frame); err != nil {
		t.Fatalf("writing the forged frame: %v", err)
	}
	ch.SetReadDeadline(time.Now().Add(3 * time.Second))
	answer, rerr := wire.ReadFrame(ch)
	if rerr == nil {
		// A node must not answer a forgery with anything it sealed: we
		// cannot open it, and an ACCEPT would mean it took the connection.
		t.Errorf("%s answered the forged frame with %d bytes", target, len(answer))
	}
	waitFor(t, 3*time.Second, target+"'s channel_refused to count the forgery", func() bool {
		return sum(handoffCounters(t, target).ChannelRefused) > before
	})
	t.Logf("%s: channel_refused %v (read on the channel: %v)", target, handoffCounters(t, target).ChannelRefused, rerr)
	<-done
	for i, r := range res {
		if err := checkApp(r); err != nil {
			t.Errorf("fresh request %d during the forgery: %v", i, err)
		}
	}
	again := c.get("GET", "http://"+lab.VIP+"/app.cgi", nil, nil)
	if err := checkApp(again); err != nil || again.node != first.node || c.dials.Load() != 1 {
		t.Errorf("the forged connection afterwards: %v, node %s (was %s), %d dials", err, again.node, first.node, c.dials.Load())
	}
	if f.total()+g.total() != 0 {
		t.Errorf("failures: %s; fresh: %s", f.String(), g.String())
	}
}

// attempt is one request of the kill test.
type attempt struct {
	start, end time.Time
	r          reply
}

// testKillDestination: n3 is killed with SIGKILL while 50 clients request
// /app.cgi in a loop on fresh connections (so handoffs to n3 are under way
// at that instant) and 10 keep-alive connections are open.
//
// What is precisely assertable from the client:
//   - a request can fail only if it was in flight at the kill (started
//     before it, not finished): that is the connection being moved to n3,
//     or served by n3, when n3 died. Their number is logged with the
//     number in flight; a request started after the kill must not fail
//     (a SYN that meets n3's buckets before the survivors take them is
//     retransmitted and answered, within the 20 s client timeout, and a
//     connection the front would move to the dead n3 must be served
//     anyway: relay or local, never dropped);
//   - the keep-alive connections served by n2, including those n1 or n3
//     handed to n2 before the kill, go on being served by n2 with no error
//     and no new connection;
//   - from 2 s after the kill every request is answered by n2 (as
//     TestCrashUnderLoad allows the cluster 2 s to take over n3's share).
//
// Not assertable from outside: which in-flight connections were mid-move
// rather than being served by n3 (both are "that connection" of the issue).
func testKillDestination(t *testing.T) {
	type keep struct {
		c    *labClient
		f    *failures
		node string
	}
	var keeps []keep
	for i := 0; i < 10; i++ {
		f := &failures{}
		c := newLabClient(f, true)
		defer c.CloseIdleConnections()
		r := c.get("GET", "http://"+lab.VIP+"/app.cgi", nil, nil)
		if err := checkApp(r); err != nil {
			t.Fatalf("keep-alive %d: %v", i, err)
		}
		keeps = append(keeps, keep{c, f, r.node})
	}
	var (
		mu       sync.Mutex
		attempts []attempt
		stop     atomic.Bool
		wg       sync.WaitGroup
		lf       failures
	)
	fresh := newLabClient(&lf, false)
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				a := attempt{start: time.Now()}
				a.r = fresh.get("GET", "http://"+lab.VIP+"/app.cgi", nil, nil)
				a.end = time.Now()
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	before := map[string]api.Handoffs{"n1": handoffCounters(t, "n1"), "n2": handoffCounters(t, "n2")}
	killed := time.Now()
	if err := lab.Kill("n3"); err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for i, k := range keeps {
		if k.node != "n2" {
			continue
		}
		r := k.c.get("GET", "http://"+lab.VIP+"/app.cgi", nil, nil)
		if err := checkApp(r); err != nil || r.node != "n2" {
			t.Errorf("keep-alive %d on n2 after the kill: %v from %s", i, err, r.node)
		}
	}
	time.Sleep(5 * time.Second)
	stop.Store(true)
	wg.Wait()

	var inFlight, failedInFlight, after2s int
	e := &capped{t: t}
	defer e.done()
	for _, a := range attempts {
		err := checkApp(a.r)
		during := a.start.Before(killed) && a.end.After(killed)
		if during {
			inFlight++
		}
		switch {
		case err != nil && during:
			failedInFlight++
		case err != nil:
			e.Errorf("request started %v after the kill failed: %v", a.start.Sub(killed).Round(time.Millisecond), err)
		case a.start.After(killed.Add(2*time.Second)) && a.r.node != "n2":
			e.Errorf("request started %v after the kill answered by %s; want n2, the only cgi member left", a.start.Sub(killed).Round(time.Millisecond), a.r.node)
		case a.start.After(killed.Add(2 * time.Second)):
			after2s++
		}
	}
	for i, k := range keeps {
		if k.node != "n2" {
			continue
		}
		if k.c.dials.Load() != 1 || k.f.total() != 0 {
			t.Errorf("keep-alive %d on n2: %d dials, %s", i, k.c.dials.Load(), k.f.String())
		}
	}
	lost := handoffCounters(t, "n1").Lost + handoffCounters(t, "n2").Lost - before["n1"].Lost - before["n2"].Lost
	sort.Slice(attempts, func(i, j int) bool { return attempts[i].start.Before(attempts[j].start) })
	t.Logf("%d requests; %d in flight at the kill, %d of them failed; %d answered by n2 from 2 s after; n1+n2 lost %d moves; client: %s",
		len(attempts), inFlight, failedInFlight, after2s, lost, lf.String())
	if after2s < 50 {
		t.Errorf("only %d requests completed from 2 s after the kill", after2s)
	}
}
