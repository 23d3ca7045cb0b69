package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Chunk is the largest piece one splice loop moves before the counters are
// updated.
const Chunk = 1 << 20

// Counters count relays; the zero value is ready.
type Counters struct {
	Started, Finished, Failed atomic.Uint64
	Active                    atomic.Int64
	// ToUpstream and ToClient count payload bytes relayed each way.
	ToUpstream, ToClient atomic.Uint64
}

// Options tune a relay.
type Options struct {
	// Idle ends the relay with ErrIdle when no byte has moved in either
	// direction for this long (judged from the kernel's byte counters of
	// both sockets, TCP_INFO); 0 means no limit.
	Idle time.Duration
	// Counters, if not nil, is updated as the relay runs.
	Counters *Counters
}

// Result is what a relay carried.
type Result struct {
	ToUpstream, ToClient int64
}

// Relay copies between client and upstream (see the package contract). It
// always closes both connections before it returns.
func Relay(ctx context.Context, client, upstream *net.TCPConn, o Options) (Result, error) {
	c := o.Counters
	if c == nil {
		c = &Counters{}
	}
	c.Started.Add(1)
	c.Active.Add(1)
	defer c.Active.Add(-1)

	var once sync.Once
	var first error
	abort := func(err error) {
		once.Do(func() {
			first = err
			client.SetLinger(0) // an aborted relay resets both ends rather than leaving them half-open
			upstream.SetLinger(0)
			client.Close()
			upstream.Close()
		})
	}
	stop := context.AfterFunc(ctx, func() { abort(ctx.Err()) })
	defer stop()

	if o.Idle > 0 {
		done := make(chan struct{})
		defer close(done)
		go watch(client, upstream, o.Idle, done, func() { abort(ErrIdle) })
	}

	var res Result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		n, err := pump(upstream, client, &c.ToUpstream)
		res.ToUpstream = n
		if err != nil {
			abort(err)
		}
	}()
	go func() {
		defer wg.Done()
		n, err := pump(client, upstream, &c.ToClient)
		res.ToClient = n
		if err != nil {
			abort(err)
		}
	}()
	wg.Wait()
	once.Do(func() {
		client.Close()
		upstream.Close()
	})
	if first != nil {
		c.Failed.Add(1)
		return res, first
	}
	c.Finished.Add(1)
	return res, nil
}

// ErrIdle is returned when a direction carried nothing for Options.Idle.
var ErrIdle = errors.New("relay: idle for too long")

// pump splices src into dst until EOF, then shuts dst's write half.
func pump(dst, src *net.TCPConn, count *atomic.Uint64) (int64, error) {
	var total int64
	lr := &io.LimitedReader{R: src}
	for {
		lr.N = Chunk
		n, err := dst.ReadFrom(lr) // splice(2): src is a *net.TCPConn under the LimitedReader
		total += n
		count.Add(uint64(n))
		if err != nil {
			return total, err
		}
		if lr.N > 0 { // less than a chunk and no error: src reached EOF
			if err := dst.CloseWrite(); err != nil {
				return total, err
			}
			return total, nil
		}
	}
}

// watch calls idle once no byte has been received or acknowledged on either
// connection for d. The kernel's counters move byte by byte, while the
// relay's own move a chunk at a time.
func watch(a, b *net.TCPConn, d time.Duration, done <-chan struct{}, idle func()) {
	tick := time.NewTicker(d / 4)
	defer tick.Stop()
	last, since := progress(a)+progress(b), time.Now()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if p := progress(a) + progress(b); p != last {
			last, since = p, time.Now()
		} else if time.Since(since) >= d {
			idle()
			return
		}
	}
}

// progress is a connection's bytes received plus bytes acknowledged by the
// peer (TCP_INFO); a closed or failing socket reads as 0.
func progress(c *net.TCPConn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var p uint64
	rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			p = ti.Bytes_received + ti.Bytes_acked
		}
	})
	return p
}
