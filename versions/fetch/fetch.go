package fetch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/versions/store"
)

// Failure causes, the names of the counters and of a peer's failure in
// Fetch's error.
const (
	CauseDial       = "dial"        // no response: connect failed or the connection died before the headers
	CauseHTTPStatus = "http_status" // an answer other than 200/206, or a 206 for another range
	CauseStall      = "stall"       // no byte for Fetcher.Stall
	CauseTruncated  = "truncated"   // the body ended before the object did
	CauseChecksum   = "checksum"    // wrong SHA-256, or more bytes than the size
	CauseIO         = "io"          // this node's disk failed: fatal, no other peer tried
)

// Defaults of Fetcher's zero fields.
const (
	DefaultStall  = 10 * time.Second
	DefaultPasses = 2
	rateWindow    = 8 // transfers the rate is computed over
)

// Fetcher pulls objects from peers into a store. Set its fields before
// the first Fetch and do not copy it after; Fetch is safe for concurrent
// use (for different objects: the same object twice is store.ErrBusy).
type Fetcher struct {
	Store *store.Store
	// Client makes the requests; nil uses one with a 3 s connect timeout.
	Client *http.Client
	// Stall: a peer that sends no byte (headers or body) for this long is
	// abandoned for the next one. Default 10 s.
	Stall time.Duration
	// Passes over the peer list; another pass runs only when the last one
	// moved bytes. Default 2.
	Passes int

	once   sync.Once
	client *http.Client
	c      struct {
		fetches, fetched, already, failed, bytes, resumed           atomic.Uint64
		dial, httpStatus, stall, truncated, checksum, io, cancelled atomic.Uint64
	}
	rmu   sync.Mutex
	rates [rateWindow]transfer
	ri    int
}

type transfer struct {
	bytes int64
	d     time.Duration
}

// Stats counts fetches and their failures by cause.
type Stats struct {
	Fetches    uint64  `json:"fetches"`       // Fetch calls
	Fetched    uint64  `json:"fetched"`       // objects fetched and ingested
	Already    uint64  `json:"already"`       // already held intact: nothing fetched
	Failed     uint64  `json:"failed"`        // Fetch calls that returned an error
	Bytes      uint64  `json:"bytes"`         // body bytes received
	Resumed    uint64  `json:"resumed"`       // requests that asked for a Range to resume
	Dial       uint64  `json:"dial"`          // per peer attempt, by cause
	HTTPStatus uint64  `json:"http_status"`   //
	Stall      uint64  `json:"stall"`         //
	Truncated  uint64  `json:"truncated"`     //
	Checksum   uint64  `json:"checksum"`      //
	IO         uint64  `json:"io"`            //
	Cancelled  uint64  `json:"cancelled"`     // the caller's context ended
	Rate       float64 `json:"bytes_per_sec"` // over the last 8 fetched objects
}

// Stats returns a snapshot of the counters and the transfer rate.
func (f *Fetcher) Stats() Stats {
	return Stats{
		Fetches: f.c.fetches.Load(), Fetched: f.c.fetched.Load(), Already: f.c.already.Load(),
		Failed: f.c.failed.Load(), Bytes: f.c.bytes.Load(), Resumed: f.c.resumed.Load(),
		Dial: f.c.dial.Load(), HTTPStatus: f.c.httpStatus.Load(), Stall: f.c.stall.Load(),
		Truncated: f.c.truncated.Load(), Checksum: f.c.checksum.Load(), IO: f.c.io.Load(),
		Cancelled: f.c.cancelled.Load(), Rate: f.Rate(),
	}
}

// Rate is the bytes per second of the last fetched objects: bytes
// received over the time from the Fetch call to the commit, summed over
// up to 8 transfers. 0 before the first.
func (f *Fetcher) Rate() float64 {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	var b int64
	var d time.Duration
	for _, t := range f.rates {
		b += t.bytes
		d += t.d
	}
	if d <= 0 {
		return 0
	}
	return float64(b) / d.Seconds()
}

func (f *Fetcher) init() {
	f.once.Do(func() {
		f.client = f.Client
		if f.client == nil {
			f.client = &http.Client{Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
				DisableCompression:  true,
				MaxIdleConnsPerHost: 2,
			}}
		}
		if f.Stall <= 0 {
			f.Stall = DefaultStall
		}
		if f.Passes <= 0 {
			f.Passes = DefaultPasses
		}
	})
}

// peerError is one attempt's failure.
type peerError struct {
	cause string
	err   error
}

func (e *peerError) Error() string { return e.cause + ": " + e.err.Error() }

func fail(cause, format string, a ...any) *peerError {
	return &peerError{cause: cause, err: fmt.Errorf(format, a...)}
}

// fetch is one object being fetched: the partial file, the hash of its
// bytes so far, and how many there are.
type fetch struct {
	sha  [32]byte
	size int64
	p    *store.Partial
	h    hash.Hash
	have int64
	got  int64 // received over the network in this Fetch
}

func (x *fetch) reset() error {
	x.h.Reset()
	x.have = 0
	return x.p.File().Truncate(0)
}

// Fetch pulls the object sha of size bytes from peers, tried in the
// order given, into the store. See the package documentation.
func (f *Fetcher) Fetch(ctx context.Context, sha [32]byte, size int64, peers []netip.AddrPort) (err error) {
	f.init()
	f.c.fetches.Add(1)
	defer func() {
		if err != nil {
			f.c.failed.Add(1)
		}
	}()
	if size < 0 {
		return fmt.Errorf("fetch %x: size %d", sha, size)
	}
	if f.Store.Has(sha) {
		f.c.already.Add(1)
		return nil
	}
	start := time.Now()
	p, err := f.Store.OpenPartial(sha)
	if err != nil {
		return fmt.Errorf("fetch %x: %w", sha, err)
	}
	committed := false
	defer func() {
		if !committed {
			p.Close() // keep what we have for a resume
		}
	}()
	x := &fetch{sha: sha, size: size, p: p, h: sha256.New()}
	if err := x.resume(); err != nil {
		f.c.io.Add(1)
		return fmt.Errorf("fetch %x: %s: %w", sha, CauseIO, err)
	}
	// the last failure of each peer, in the order given
	fails := make(map[netip.AddrPort]string, len(peers))
	for pass := 0; pass < f.Passes; pass++ {
		moved := false
		for _, peer := range peers {
			if x.have == size && x.complete() {
				break
			}
			before := x.got
			perr := f.attempt(ctx, peer, x)
			moved = moved || x.got > before
			if perr == nil && !x.complete() {
				perr = fail(CauseChecksum, "%d bytes do not hash to the object's SHA-256", size)
				if err := x.reset(); err != nil {
					perr = fail(CauseIO, "%v", err)
				}
			}
			if perr == nil {
				break
			}
			f.count(perr.cause)
			if ctx.Err() != nil {
				return fmt.Errorf("fetch %x from %s: %w", sha, peer, ctx.Err())
			}
			if perr.cause == CauseIO {
				return fmt.Errorf("fetch %x from %s: %w", sha, peer, perr)
			}
			fails[peer] = perr.Error()
		}
		if x.have == size && x.complete() {
			if err := p.Commit(size); err != nil {
				committed = true // the partial is gone either way
				f.c.io.Add(1)
				return fmt.Errorf("fetch %x: %s: %w", sha, CauseIO, err)
			}
			committed = true
			f.c.fetched.Add(1)
			f.record(x.got, time.Since(start))
			return nil
		}
		if !moved {
			break
		}
	}
	if len(peers) == 0 {
		return fmt.Errorf("fetch %x: no peer holds it", sha)
	}
	var each []string
	for _, peer := range peers {
		if why, ok := fails[peer]; ok {
			each = append(each, fmt.Sprintf("peer %s: %s", peer, why))
			delete(fails, peer)
		}
	}
	return fmt.Errorf("fetch %x (%d bytes): every peer failed: %s", sha, size, strings.Join(each, "; "))
}

// complete says whether the partial is the whole object: size and hash.
func (x *fetch) complete() bool {
	if x.have != x.size {
		return false
	}
	var got [32]byte
	x.h.Sum(got[:0])
	return got == x.sha
}

// resume hashes what an earlier fetch left in the partial file; one
// longer than the object is started again.
func (x *fetch) resume() error {
	fi, err := x.p.File().Stat()
	if err != nil {
		return err
	}
	if fi.Size() > x.size {
		return x.reset()
	}
	n, err := io.Copy(x.h, io.NewSectionReader(x.p.File(), 0, fi.Size()))
	if err != nil {
		return err
	}
	x.have = n
	if x.have == x.size && !x.complete() {
		return x.reset() // a whole but wrong file: the next peer starts over
	}
	return nil
}

func (f *Fetcher) count(cause string) {
	switch cause {
	case CauseDial:
		f.c.dial.Add(1)
	case CauseHTTPStatus:
		f.c.httpStatus.Add(1)
	case CauseStall:
		f.c.stall.Add(1)
	case CauseTruncated:
		f.c.truncated.Add(1)
	case CauseChecksum:
		f.c.checksum.Add(1)
	case CauseIO:
		f.c.io.Add(1)
	case "cancelled":
		f.c.cancelled.Add(1)
	}
}

func (f *Fetcher) record(b int64, d time.Duration) {
	f.rmu.Lock()
	f.rates[f.ri%rateWindow] = transfer{b, d}
	f.ri++
	f.rmu.Unlock()
}

// attempt asks one peer for the rest of the object and appends what it
// sends to the partial file. nil means the partial now holds size bytes
// (not yet verified).
func (f *Fetcher) attempt(ctx context.Context, peer netip.AddrPort, x *fetch) *peerError {
	if x.have == x.size {
		return nil
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(f.Stall, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	why := func(cause string, err error) *peerError {
		switch {
		case stalled.Load():
			return fail(CauseStall, "no byte for %v after %d of %d bytes", f.Stall, x.have, x.size)
		case ctx.Err() != nil:
			return &peerError{cause: "cancelled", err: ctx.Err()}
		}
		return &peerError{cause: cause, err: err}
	}

	u := "http://" + peer.String() + ObjectsPrefix + fmt.Sprintf("%x", x.sha)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return fail(CauseDial, "%v", err)
	}
	if x.have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", x.have))
		f.c.resumed.Add(1)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the peer's, named already
		}
		return why(CauseDial, err)
	}
	defer resp.Body.Close()
	watchdog.Reset(f.Stall)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var first, last, total int64
		cr := resp.Header.Get("Content-Range")
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil || first != x.have || total != x.size {
			return fail(CauseHTTPStatus, "206 with Content-Range %q, asked bytes=%d- of %d", cr, x.have, x.size)
		}
	case http.StatusOK:
		if x.have > 0 { // the peer ignored the Range: start over
			if err := x.reset(); err != nil {
				return fail(CauseIO, "%v", err)
			}
		}
		if resp.ContentLength >= 0 && resp.ContentLength != x.size {
			return fail(CauseChecksum, "the peer's object holds %d bytes, not %d", resp.ContentLength, x.size)
		}
	default:
		return fail(CauseHTTPStatus, "%s", resp.Status)
	}

	buf := make([]byte, 256<<10)
	file := x.p.File()
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			watchdog.Reset(f.Stall)
			if x.have+int64(n) > x.size {
				return fail(CauseChecksum, "more than the object's %d bytes", x.size)
			}
			if _, err := file.WriteAt(buf[:n], x.have); err != nil {
				return fail(CauseIO, "%v", err)
			}
			x.h.Write(buf[:n])
			x.have += int64(n)
			x.got += int64(n)
			f.c.bytes.Add(uint64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return why(CauseTruncated, fmt.Errorf("after %d of %d bytes: %v", x.have, x.size, rerr))
		}
	}
	if x.have < x.size {
		return fail(CauseTruncated, "the body ended after %d of %d bytes", x.have, x.size)
	}
	return nil
}
