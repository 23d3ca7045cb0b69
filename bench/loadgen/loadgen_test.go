package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var body1k = []byte(strings.Repeat("shoal-lb", 128))

// nodeServer serves body1k over net/http, naming the nodes in turn in
// X-Shoal-Node. It returns its address and a count of accepted connections.
func nodeServer(t *testing.T, nodes []string, tweak func(*http.Server)) (string, *atomic.Int64) {
	t.Helper()
	var seq, conns atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := seq.Add(1) - 1
			w.Header().Set("X-Shoal-Node", nodes[int(n)%len(nodes)])
			w.Header().Set("Content-Length", strconv.Itoa(len(body1k)))
			w.Write(body1k)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	if tweak != nil {
		tweak(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), &conns
}

// rawServer hands every accepted connection, after its request head was
// read, to fn.
func rawServer(t *testing.T, fn func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var open []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					c.Close()
					return
				}
				fn(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

func run(t *testing.T, cfg Config) *Report {
	t.Helper()
	began := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if took := time.Since(began); took > cfg.Duration+timeout+time.Second {
		t.Errorf("Run took %v, over Duration %v + Timeout %v", took, cfg.Duration, timeout)
	}
	t.Log(rep.Summary())
	return rep
}

func within(got, want, tol float64) bool { return got >= want*(1-tol) && got <= want*(1+tol) }

// startedRate is the rate at which new connections actually started.
func startedRate(rep *Report) float64 {
	var first, last time.Time
	n := 0
	for _, x := range rep.Results {
		if x.Persistent {
			continue
		}
		if n == 0 {
			first = x.Start
		}
		last = x.Start
		n++
	}
	if n < 2 {
		return 0
	}
	return float64(n-1) / last.Sub(first).Seconds()
}

func checkRate(t *testing.T, rep *Report, rate int, d time.Duration) {
	t.Helper()
	want := float64(rate) * d.Seconds()
	if got := rep.Started + rep.Skipped; !within(float64(got), want, 0.2) {
		t.Errorf("%d starts, want %.0f ±20%%", got, want)
	}
	if got := startedRate(rep); !within(got, float64(rate), 0.2) {
		t.Errorf("started %.0f/s, want %d/s ±20%%", got, rate)
	}
}

func TestRateNodesWindows(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	addr, _ := nodeServer(t, nodes, nil)
	const rate, d = 400, time.Second
	rep := run(t, Config{Target: addr, Path: "/obj/1k", Rate: rate, Duration: d})
	checkRate(t, rep, rate, d)
	if rep.Failed != 0 || rep.Skipped != 0 || rep.OK != rep.Started {
		t.Fatalf("ok %d failed %d skipped %d of %d: %v", rep.OK, rep.Failed, rep.Skipped, rep.Started, rep.ByErr)
	}
	sum := 0
	for _, n := range nodes {
		if c := rep.ByNode[n]; c < rep.OK/3 || c > rep.OK/3+1 {
			t.Errorf("node %s served %d of %d", n, c, rep.OK)
		}
		sum += rep.ByNode[n]
	}
	if sum != rep.OK || len(rep.ByNode) != 3 {
		t.Errorf("ByNode %v does not add up to %d", rep.ByNode, rep.OK)
	}
	for i, x := range rep.Results {
		if x.Err != "" || x.Status != 200 || !x.Established || x.Connect <= 0 || x.Total < x.Connect || x.Persistent {
			t.Fatalf("result %d: %+v", i, x)
		}
		if i > 0 && x.Start.Before(rep.Results[i-1].Start) {
			t.Fatalf("results not sorted by Start at %d", i)
		}
	}
	if !rep.FirstFailure.IsZero() || !rep.LastFailure.IsZero() {
		t.Errorf("failure times set without failures")
	}

	half := rep.From.Add(d / 2)
	a, b := rep.Between(rep.From, half), rep.Between(half, rep.To)
	if a.Started+b.Started != rep.Started || !within(float64(a.Started), rate/2, 0.2) {
		t.Errorf("halves %d + %d, of %d", a.Started, b.Started, rep.Started)
	}
	shares := rep.Shares(4)
	if len(shares) != 4 {
		t.Fatalf("%d slices", len(shares))
	}
	for k, m := range shares {
		total := 0.0
		for _, s := range m {
			total += s
		}
		if total < 0.999 || total > 1.001 || len(m) != 3 {
			t.Errorf("slice %d: shares %v", k, m)
		}
	}
}

// TestSustains1000 is the rate the lab tests use at most.
func TestSustains1000(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	addr, _ := nodeServer(t, []string{"n1"}, nil)
	const rate, d = 1000, 2 * time.Second
	rep := run(t, Config{Target: addr, Path: "/obj/1k", Rate: rate, Duration: d})
	checkRate(t, rep, rate, d)
	if rep.Failed != 0 {
		t.Errorf("%d failures: %v", rep.Failed, rep.ByErr)
	}
}

func TestPersistent(t *testing.T) {
	addr, conns := nodeServer(t, []string{"n1", "n2"}, nil)
	const slots, every, d = 3, 50 * time.Millisecond, 600 * time.Millisecond
	rep := run(t, Config{Target: addr, Path: "/obj/1k", Rate: 0, Duration: d, Persistent: slots, PersistentEvery: every})
	if rep.Started != 0 || rep.PersistentFailed != 0 || rep.PersistentOK != rep.PersistentRequests {
		t.Fatalf("started %d, persistent %d ok %d failed %v", rep.Started, rep.PersistentOK, rep.PersistentFailed, rep.PersistentByErr)
	}
	if got := conns.Load(); got != slots {
		t.Errorf("server saw %d connections, want %d", got, slots)
	}
	per := map[int]int{}
	for _, x := range rep.Results {
		if !x.Persistent || x.ConnID < 0 || x.ConnID >= slots || x.Node == "" {
			t.Fatalf("bad result %+v", x)
		}
		if (x.Opened == "first") != (per[x.ConnID] == 0) || (x.Connect > 0) != (x.Opened != "") {
			t.Errorf("slot %d request %d: Opened %q Connect %v", x.ConnID, per[x.ConnID], x.Opened, x.Connect)
		}
		per[x.ConnID]++
	}
	for s := 0; s < slots; s++ {
		if want := int(d / every); per[s] < want*8/10 || per[s] > want {
			t.Errorf("slot %d made %d requests, want about %d", s, per[s], want)
		}
	}
}

// A server closing idle keep-alive connections (as a draining node does)
// costs a reconnect, not an error.
func TestPersistentIdleClose(t *testing.T) {
	addr, conns := nodeServer(t, []string{"n1"}, func(s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
	rep := run(t, Config{Target: addr, Duration: 700 * time.Millisecond, Persistent: 1, PersistentEvery: 200 * time.Millisecond})
	if rep.PersistentRequests != 4 || rep.PersistentFailed != 0 || rep.PersistentReopened != 3 {
		t.Fatalf("%d requests, %d failed %v, %d reopened", rep.PersistentRequests, rep.PersistentFailed, rep.PersistentByErr, rep.PersistentReopened)
	}
	for i, x := range rep.Results {
		want := "idle-close"
		if i == 0 {
			want = "first"
		}
		if x.Opened != want {
			t.Errorf("request %d opened %q, want %q", i, x.Opened, want)
		}
	}
	if conns.Load() != 4 {
		t.Errorf("server saw %d connections", conns.Load())
	}
}

// A persistent connection whose requests fail reconnects on the next tick.
func TestPersistentAfterError(t *testing.T) {
	var n atomic.Int64
	addr := rawServer(t, func(c *net.TCPConn) {
		if n.Add(1) == 1 {
			c.SetLinger(0)
			c.Close()
			return
		}
		for {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Shoal-Node: n2\r\nContent-Length: 2\r\n\r\nok")
			if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
				c.Close()
				return
			}
		}
	})
	rep := run(t, Config{Target: addr, Duration: 250 * time.Millisecond, Persistent: 1, PersistentEvery: 50 * time.Millisecond})
	if rep.PersistentRequests != 5 || rep.PersistentFailed != 1 || rep.PersistentByErr[ErrReset] != 1 {
		t.Fatalf("%d requests, %v", rep.PersistentRequests, rep.PersistentByErr)
	}
	r := rep.Results
	if r[0].Err != ErrReset || r[1].Opened != "after-error" || r[1].Node != "n2" || r[2].Opened != "" {
		t.Errorf("results %+v", r[:3])
	}
	if rep.FirstFailure != r[0].Start || rep.LastFailure != r[0].Start {
		t.Errorf("failure times %v %v", rep.FirstFailure, rep.LastFailure)
	}
}

func TestErrorClasses(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nX-Shoal-Node: n1\r\nConnection: close\r\n"
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return ln.Addr().String()
	}
	for _, tc := range []struct {
		name   string
		addr   func(t *testing.T) string
		want   string
		status int
	}{
		{"reset", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) { c.SetLinger(0); c.Close() })
		}, ErrReset, 0},
		{"reset-mid-body", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) {
				io.WriteString(c, head+"Content-Length: 100\r\n\r\nhalf")
				time.Sleep(20 * time.Millisecond)
				c.SetLinger(0)
				c.Close()
			})
		}, ErrReset, 200},
		{"refused", func(t *testing.T) string { return refused() }, ErrRefused, 0},
		{"timeout", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) {}) // reads the request, never answers
		}, ErrTimeout, 0},
		{"eof", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) { c.Close() })
		}, ErrEOF, 0},
		{"eof-mid-head", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Sh"); c.Close() })
		}, ErrEOF, 0},
		{"bad-body-short", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) { io.WriteString(c, head+"Content-Length: 100\r\n\r\nhalf"); c.Close() })
		}, ErrBadBody, 200},
		{"bad-body-long", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) { io.WriteString(c, head+"Content-Length: 2\r\n\r\nokAndMore"); c.Close() })
		}, ErrBadBody, 200},
		{"bad-body-no-length", func(t *testing.T) string {
			return rawServer(t, func(c *net.TCPConn) { io.WriteString(c, head+"\r\nuntil close"); c.Close() })
		}, ErrBadBody, 200},
		{"bad-status", func(t *testing.T) string {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Shoal-Node", "n1")
				http.Error(w, "draining", http.StatusServiceUnavailable)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return ln.Addr().String()
		}, ErrBadStatus, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			rep := run(t, Config{Target: tc.addr(t), Rate: 20, Duration: 200 * time.Millisecond, Timeout: timeout})
			if rep.Started != 4 || rep.Failed != 4 || rep.ByErr[tc.want] != 4 || rep.OK != 0 {
				t.Fatalf("started %d failed %d: %v; %+v", rep.Started, rep.Failed, rep.ByErr, rep.Results[0])
			}
			if (rep.Resets == 4) != (tc.want == ErrReset) {
				t.Errorf("Resets %d", rep.Resets)
			}
			if rep.FirstFailure != rep.Results[0].Start || rep.LastFailure != rep.Results[3].Start {
				t.Errorf("failure times %v..%v", rep.FirstFailure, rep.LastFailure)
			}
			for _, x := range rep.Results {
				if x.Err != tc.want || x.Status != tc.status || x.Detail == "" || x.Established != (tc.want != ErrRefused) {
					t.Errorf("%+v", x)
					break
				}
				if tc.status != 0 && x.Node != "n1" {
					t.Errorf("node %q", x.Node)
				}
				if tc.want == ErrTimeout && (x.Total < timeout || x.Total > timeout+200*time.Millisecond) {
					t.Errorf("timed out after %v, want %v", x.Total, timeout)
				}
			}
		})
	}
}

func TestSkipped(t *testing.T) {
	addr := rawServer(t, func(c *net.TCPConn) {}) // stalls
	rep := run(t, Config{Target: addr, Rate: 50, Duration: 200 * time.Millisecond, Timeout: 500 * time.Millisecond, MaxInFlight: 2})
	if rep.Started != 2 || rep.Skipped != 8 || rep.ByErr[ErrTimeout] != 2 || rep.ByErr[ErrSkipped] != 0 {
		t.Fatalf("started %d skipped %d: %v", rep.Started, rep.Skipped, rep.ByErr)
	}
	if !rep.FirstFailure.Equal(rep.Results[0].Start) || !rep.LastFailure.Equal(rep.Results[1].Start) {
		t.Errorf("skips counted as failures: %v..%v", rep.FirstFailure, rep.LastFailure)
	}
}

// A listener whose accept queue is full drops SYNs; the client's SYN is
// retransmitted after Linux's initial RTO of 1 s, by when a slot was freed.
func TestSynRetransmitted(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one connection in the accept queue
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	filler, err := net.Dial("tcp", addr) // fills the accept queue
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	time.Sleep(50 * time.Millisecond)
	go func() {
		time.Sleep(300 * time.Millisecond) // after the first SYN was dropped
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Shoal-Node: n1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
				}
			}()
		}
	}()
	rep := run(t, Config{Target: addr, Rate: 1, Duration: time.Second, Timeout: 4 * time.Second})
	if rep.OK != 1 || rep.SynRetransmitted != 1 {
		t.Fatalf("ok %d, SYN retransmitted %d, connect %v, %v", rep.OK, rep.SynRetransmitted, rep.Results[0].Connect, rep.ByErr)
	}
}

func TestCancel(t *testing.T) {
	addr := rawServer(t, func(c *net.TCPConn) {}) // stalls
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	began := time.Now()
	rep, err := Run(ctx, Config{Target: addr, Rate: 100, Duration: 5 * time.Second, Timeout: 5 * time.Second, Persistent: 1})
	if !errors.Is(err, context.DeadlineExceeded) || rep == nil {
		t.Fatalf("err %v, report %v", err, rep)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Run took %v after cancel", took)
	}
	t.Log(rep.Summary())
	for _, x := range rep.Results {
		if x.Err != ErrCanceled {
			t.Logf("%+v", x)
		}
	}
	if rep.Started < 5 || rep.Started > 30 || rep.ByErr[ErrCanceled] != rep.Started || rep.PersistentByErr[ErrCanceled] != 1 {
		t.Errorf("started %d: %v, persistent %v", rep.Started, rep.ByErr, rep.PersistentByErr)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{Rate: 1, Duration: time.Second},
		{Target: "nohost", Rate: 1, Duration: time.Second},
		{Target: "127.0.0.1:1", Rate: 1},
		{Target: "127.0.0.1:1", Duration: time.Second},
		{Target: "127.0.0.1:1", Rate: -1, Duration: time.Second},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := Config{Rate: 3, Duration: time.Second}
	if c.starts() != 3 || c.offset(2) != 666666666 {
		t.Errorf("starts %d offset %v", c.starts(), c.offset(2))
	}
	c = Config{Rate: 1000, Duration: 1500*time.Millisecond + 1}
	if c.starts() != 1501 {
		t.Errorf("starts %d", c.starts())
	}
}

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return fmt.Errorf("wrapped: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)})
	}
	for err, want := range map[error]string{
		op(syscall.ECONNRESET):       ErrReset,
		op(syscall.EPIPE):            ErrReset,
		op(syscall.ECONNREFUSED):     ErrRefused,
		op(syscall.ETIMEDOUT):        ErrTimeout,
		op(os.ErrDeadlineExceeded):   ErrTimeout,
		context.DeadlineExceeded:     ErrTimeout,
		op(syscall.EHOSTUNREACH):     ErrUnreachable,
		io.ErrUnexpectedEOF:          ErrEOF,
		op(context.Canceled):         ErrCanceled,
		errors.New("malformed HTTP"): ErrOther,
	} {
		if got := classify(err); got != want {
			t.Errorf("classify(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestShares(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rep := newReport([]Result{
		{Start: at(10), Node: "n1"},
		{Start: at(20), Node: "n1"},
		{Start: at(30), Node: "n2"},
		{Start: at(40), Node: "n2", Err: ErrReset},
		{Start: at(60), Node: "n2"},
		{Start: at(70), Err: ErrSkipped},
		{Start: at(80), Node: "n3", Persistent: true},
	}, t0, at(100), Config{})
	got := rep.Shares(2)
	if len(got) != 2 || got[0]["n1"] < 0.66 || got[0]["n1"] > 0.67 || got[0]["n2"] < 0.33 || got[1]["n2"] != 1 || len(got[1]) != 1 {
		t.Errorf("shares %v", got)
	}
	if rep.Started != 5 || rep.OK != 4 || rep.Failed != 1 || rep.Resets != 1 || rep.Skipped != 1 || rep.PersistentOK != 1 {
		t.Errorf("%+v", rep)
	}
	w := rep.Between(at(30), at(70))
	if w.Started != 3 || w.OK != 2 || w.Failed != 1 || w.ByNode["n2"] != 2 || w.FirstFailure != at(40) {
		t.Errorf("window %+v", w)
	}
	if s := w.Summary(); !strings.Contains(s, "reset 1") {
		t.Errorf("summary %q", s)
	}
}

// TestMeasureRate (LOADGEN_MEASURE=1) reports the highest rates the
// generator sustains against a loopback server in the same process.
func TestMeasureRate(t *testing.T) {
	if os.Getenv("LOADGEN_MEASURE") == "" {
		t.Skip("set LOADGEN_MEASURE=1")
	}
	addr, _ := nodeServer(t, []string{"n1"}, nil)
	// lockedDial dials as lab.DialContext does, on a fresh locked OS thread
	// that dies afterwards, minus the setns.
	lockedDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread()
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	for _, dial := range []string{"net.Dialer", "locked thread"} {
		for _, rate := range []int{1000, 2000, 4000, 8000} {
			cfg := Config{Target: addr, Path: "/obj/1k", Rate: rate, Duration: 3 * time.Second}
			if dial == "locked thread" {
				cfg.Dial = lockedDial
			}
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, rate %d: started %.0f/s; %s", dial, rate, startedRate(rep), rep.Summary())
		}
	}
}
