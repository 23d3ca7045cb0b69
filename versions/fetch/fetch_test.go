package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/versions/store"
)

func loopback(a netip.Addr) bool { return a.IsLoopback() }

func newStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func data(seed byte, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
}

// source is a peer: a store holding the object and a real HTTP server.
type source struct {
	st   *store.Store
	srv  *Server
	addr netip.AddrPort
	mu   sync.Mutex
	rng  []string // Range headers received
}

func serve(t testing.TB, h http.Handler) netip.AddrPort {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return netip.MustParseAddrPort(ts.Listener.Addr().String())
}

func newSource(t *testing.T, seed byte, n int64, isMember func(netip.Addr) bool) (*source, [32]byte) {
	t.Helper()
	src := &source{st: newStore(t)}
	sha, _, err := src.st.Ingest(data(seed, n))
	if err != nil {
		t.Fatal(err)
	}
	src.srv = Handler(src.st, isMember)
	src.addr = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src.mu.Lock()
		src.rng = append(src.rng, r.Header.Get("Range"))
		src.mu.Unlock()
		src.srv.ServeHTTP(w, r)
	}))
	return src, sha
}

// objectFile reads the object back from a store and checks it hashes to
// sha, so an intact Has is not taken on trust.
func checkHeld(t *testing.T, st *store.Store, sha [32]byte, size int64) {
	t.Helper()
	f, n, err := st.Object(sha)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	if n != size || [32]byte(h.Sum(nil)) != sha {
		t.Fatalf("stored object: %d bytes hashing to %x, want %d and %x", n, h.Sum(nil), size, sha)
	}
	objs, _ := os.ReadDir(filepath.Join(st.Root(), "objects"))
	tmp, _ := os.ReadDir(filepath.Join(st.Root(), "tmp"))
	if len(objs) != 1 || len(tmp) != 0 {
		t.Fatalf("store holds %d objects and %d tmp files, want 1 and 0", len(objs), len(tmp))
	}
}

func TestFetch64MiB(t *testing.T) {
	const size = 64 << 20
	src, sha := newSource(t, 1, size, loopback)
	dst := newStore(t)
	f := &Fetcher{Store: dst}
	start := time.Now()
	if err := f.Fetch(context.Background(), sha, size, []netip.AddrPort{src.addr}); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	checkHeld(t, dst, sha, size)
	st := f.Stats()
	t.Logf("64 MiB over loopback in %v: %.0f MB/s (Rate says %.0f MB/s)", d, size/d.Seconds()/1e6, st.Rate/1e6)
	if st.Fetched != 1 || st.Bytes != size || st.Resumed != 0 || st.Rate <= 0 {
		t.Fatalf("stats %+v", st)
	}
	if ds := dst.Stats(); ds.Ingested != 1 || ds.IngestedBytes != size {
		t.Fatalf("store stats %+v", ds)
	}
	// Fetching again finds it held: no transfer.
	if err := f.Fetch(context.Background(), sha, size, []netip.AddrPort{src.addr}); err != nil || f.Stats().Already != 1 {
		t.Fatalf("second fetch: %v, stats %+v", err, f.Stats())
	}
}

// cutter answers 200 with the whole length, sends the first half of the
// object, then closes the connection under the client.
func cutter(t *testing.T, st *store.Store, sha [32]byte) (netip.AddrPort, *atomic.Int64) {
	var sent atomic.Int64
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, size, err := st.Object(sha)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(200)
		n, _ := io.CopyN(w, f, size/2)
		sent.Store(n)
		w.(http.Flusher).Flush()
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		c.Close()
	})), &sent
}

func TestResumeAfterCut(t *testing.T) {
	const size = 4<<20 + 123
	good, sha := newSource(t, 2, size, loopback)
	cut, sent := cutter(t, good.st, sha)
	dst := newStore(t)
	f := &Fetcher{Store: dst}
	if err := f.Fetch(context.Background(), sha, size, []netip.AddrPort{cut, good.addr}); err != nil {
		t.Fatal(err)
	}
	checkHeld(t, dst, sha, size)
	half := int64(size / 2)
	if sent.Load() != half {
		t.Fatalf("the cutting peer sent %d bytes, want %d", sent.Load(), half)
	}
	if got := int64(good.srv.Stats().Bytes); got != size-half {
		t.Fatalf("the second peer served %d bytes, want the %d the first did not", got, size-half)
	}
	good.mu.Lock()
	rng := good.rng
	good.mu.Unlock()
	if want := fmt.Sprintf("bytes=%d-", half); len(rng) != 1 || rng[0] != want {
		t.Fatalf("second peer got Range %q, want %q", rng, want)
	}
	if st := f.Stats(); st.Truncated != 1 || st.Resumed != 1 || st.Bytes != size {
		t.Fatalf("stats %+v", st)
	}
}

// corrupt rewrites one byte of a source's object in place: the object
// server serves raw files, so this peer sends corrupt bytes.
func corrupt(t *testing.T, st *store.Store, sha [32]byte) {
	t.Helper()
	name := filepath.Join(st.Root(), "objects", fmt.Sprintf("%x", sha))
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	f.ReadAt(b[:], 1000)
	b[0] ^= 1
	f.WriteAt(b[:], 1000)
}

func TestCorruptPeerRejected(t *testing.T) {
	const size = 1 << 20
	bad, sha := newSource(t, 3, size, loopback)
	corrupt(t, bad.st, sha)
	good, _ := newSource(t, 3, size, loopback)
	dst := newStore(t)
	f := &Fetcher{Store: dst}
	if err := f.Fetch(context.Background(), sha, size, []netip.AddrPort{bad.addr, good.addr}); err != nil {
		t.Fatal(err)
	}
	checkHeld(t, dst, sha, size) // exactly one object, the good one; no partial left
	if got := bad.srv.Stats().Bytes; got != size {
		t.Fatalf("bad peer served %d bytes, want all %d (the corruption is only found at the end)", got, size)
	}
	if got := good.srv.Stats().Bytes; got != size {
		t.Fatalf("good peer served %d bytes, want all %d: corrupt bytes must not be resumed from", got, size)
	}
	if st := f.Stats(); st.Checksum != 1 || st.Fetched != 1 {
		t.Fatalf("stats %+v", st)
	}
	if dst.Stats().Ingested != 1 {
		t.Fatal("more than the good object was ingested")
	}
}

// staller sends the headers and first bytes of the object (or nothing,
// when first is 0 and headers is false), then goes quiet until the
// client leaves.
func staller(t *testing.T, st *store.Store, sha [32]byte, headers bool, first int64) netip.AddrPort {
	release := make(chan struct{})
	ap := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headers {
			f, size, _ := st.Object(sha)
			defer f.Close()
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			io.CopyN(w, f, first)
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return ap
}

func TestStallMovesOn(t *testing.T) {
	const size = 3 << 20
	good, sha := newSource(t, 4, size, loopback)
	stall := staller(t, good.st, sha, true, 1<<20)
	dst := newStore(t)
	f := &Fetcher{Store: dst, Stall: 300 * time.Millisecond}
	start := time.Now()
	if err := f.Fetch(context.Background(), sha, size, []netip.AddrPort{stall, good.addr}); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	checkHeld(t, dst, sha, size)
	if d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("fetch took %v, want the 300ms stall timeout plus a fast transfer", d)
	}
	if got := good.srv.Stats().Bytes; got != size-1<<20 {
		t.Fatalf("second peer served %d bytes, want %d (resumed after the stalled MiB)", got, size-1<<20)
	}
	if st := f.Stats(); st.Stall != 1 || st.Resumed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAllPeersBad(t *testing.T) {
	const size = 512 << 10
	bad, sha := newSource(t, 5, size, loopback)
	corrupt(t, bad.st, sha)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	empty := Handler(newStore(t), loopback)
	absent := serve(t, empty)
	mute := staller(t, bad.st, sha, false, 0)

	dst := newStore(t)
	f := &Fetcher{Store: dst, Stall: 200 * time.Millisecond}
	peers := []netip.AddrPort{closed, absent, bad.addr, mute}
	err := f.Fetch(context.Background(), sha, size, peers)
	if err == nil {
		t.Fatal("fetch from only bad peers succeeded")
	}
	t.Log(err)
	for i, want := range []string{"dial", "http_status: 404", "checksum", "stall"} {
		if !strings.Contains(err.Error(), fmt.Sprintf("peer %s: %s", peers[i], want)) {
			t.Errorf("error does not name peer %s's failure %q", peers[i], want)
		}
	}
	st := f.Stats()
	if st.Dial == 0 || st.HTTPStatus == 0 || st.Checksum == 0 || st.Stall == 0 || st.Failed != 1 || st.Fetched != 0 {
		t.Fatalf("stats %+v", st)
	}
	if dst.Has(sha) || dst.Stats().Ingested != 0 {
		t.Fatal("an object was ingested from bad peers")
	}
	if objs, _ := os.ReadDir(filepath.Join(dst.Root(), "objects")); len(objs) != 0 {
		t.Fatalf("%d objects in the store", len(objs))
	}
	if f.Fetch(context.Background(), sha, size, nil) == nil {
		t.Fatal("fetch with no peers succeeded")
	}
}

func TestServerRefuses(t *testing.T) {
	src, sha := newSource(t, 6, 1000, func(netip.Addr) bool { return false })
	f := &Fetcher{Store: newStore(t)}
	err := f.Fetch(context.Background(), sha, 1000, []netip.AddrPort{src.addr})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("non-member fetch: %v, want 403", err)
	}
	if st := src.srv.Stats(); st.Forbidden != 1 || st.Bytes != 0 {
		t.Fatalf("server stats %+v", st)
	}

	member, sha := newSource(t, 6, 1000, loopback)
	base := "http://" + member.addr.String()
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", ObjectsPrefix + "xyz", 400, "64 lowercase hex"},
		{"GET", ObjectsPrefix + strings.ToUpper(fmt.Sprintf("%x", sha)), 400, "64 lowercase hex"},
		{"GET", ObjectsPrefix + fmt.Sprintf("%x", sha256.Sum256(nil)), 404, "no object"},
		{"POST", ObjectsPrefix + fmt.Sprintf("%x", sha), 405, "GET or HEAD"},
		{"GET", "/v1/other", 404, ""},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !bytes.Contains(b, []byte(c.body)) {
			t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, resp.StatusCode, b, c.status, c.body)
		}
	}
	req, _ := http.NewRequest("GET", base+ObjectsPrefix+fmt.Sprintf("%x", sha), nil)
	req.Header.Set("Range", "bytes=900-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || len(b) != 100 || resp.Header.Get("Content-Range") != "bytes 900-999/1000" {
		t.Fatalf("range: %d, %d bytes, %q", resp.StatusCode, len(b), resp.Header.Get("Content-Range"))
	}
	if st := member.srv.Stats(); st.BadRequest != 3 || st.NotFound != 2 || st.Served != 1 {
		t.Fatalf("server stats %+v", st)
	}
}

func TestFetchCancelled(t *testing.T) {
	const size = 1 << 20
	src, sha := newSource(t, 7, size, loopback)
	mute := staller(t, src.st, sha, true, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	dst := newStore(t)
	f := &Fetcher{Store: dst, Stall: 10 * time.Second}
	err := f.Fetch(ctx, sha, size, []netip.AddrPort{mute, src.addr})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch: %v, want the context's error", err)
	}
	if src.srv.Stats().Requests != 0 {
		t.Fatal("a cancelled fetch went on to the next peer")
	}
	// The 4096 bytes received are kept for the next fetch to resume.
	f2 := &Fetcher{Store: dst}
	if err := f2.Fetch(context.Background(), sha, size, []netip.AddrPort{src.addr}); err != nil {
		t.Fatal(err)
	}
	if got := src.srv.Stats().Bytes; got != size-4096 {
		t.Fatalf("resumed fetch moved %d bytes, want %d", got, size-4096)
	}
	checkHeld(t, dst, sha, size)
}
