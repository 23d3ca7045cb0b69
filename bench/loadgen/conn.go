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
	"syscall"
	"time"
)

// oneShot runs new connection r: dial, one request with Connection: close,
// the response, then the server's FIN.
func oneShot(ctx context.Context, cfg *Config, req []byte, r *Result, scheduled time.Time) {
	start := time.Now()
	r.Start, r.Late = start, start.Sub(scheduled)
	deadline := start.Add(cfg.Timeout)
	conn, err := dial(ctx, cfg, deadline)
	r.Connect = time.Since(start)
	if err != nil {
		r.Total = r.Connect
		fail(ctx, r, classify(err), err)
		return
	}
	r.Established = true
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	br := newReader(conn)
	ex := exchange(ctx, conn, br, req, deadline)
	r.Total = time.Since(start)
	r.Node, r.Status = ex.node, ex.status
	if ex.class != "" {
		fail(ctx, r, ex.class, ex.err)
		return
	}
	// Let the server close first (it must: we asked for Connection: close)
	// so TIME_WAIT stays on its side. A byte here is more body than
	// Content-Length said; a reset after a complete response harms nobody.
	var b [1]byte
	if n, _ := br.Read(b[:]); n > 0 {
		fail(ctx, r, ErrBadBody, errors.New("bytes after the body"))
		return
	}
}

// runPersistent runs persistent slot s: one request every PersistentEvery
// on a keep-alive connection, reopened when needed, until end.
func runPersistent(ctx context.Context, cfg *Config, req []byte, s int, t0, end time.Time) []Result {
	var (
		out    []Result
		conn   net.Conn
		br     *reader
		stop   func() bool
		reason = "first"
	)
	drop := func(why string) {
		stop()
		conn.Close()
		conn, reason = nil, why
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for tick := t0; tick.Before(end); {
		if !sleepUntil(ctx, timer, tick) {
			break
		}
		start := time.Now()
		r := Result{Start: start, Late: start.Sub(tick), Persistent: true, ConnID: s}
		deadline := start.Add(cfg.Timeout)
		if conn != nil {
			conn.SetDeadline(deadline)
			if why := idleState(conn); why != "" {
				drop(why)
			}
		}
		if conn == nil {
			c, err := dial(ctx, cfg, deadline)
			r.Connect, r.Opened = time.Since(start), reason
			if err != nil {
				r.Total = r.Connect
				fail(ctx, &r, classify(err), err)
				reason = "after-error"
			} else {
				conn, br = c, newReader(c)
				stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
				reason = ""
			}
		}
		if conn != nil {
			r.Established = true
			ex := exchange(ctx, conn, br, req, deadline)
			r.Total = time.Since(start)
			r.Node, r.Status = ex.node, ex.status
			switch {
			case ex.class != "":
				fail(ctx, &r, ex.class, ex.err)
				drop("after-error")
			case ex.close:
				drop("server-close")
			}
		}
		out = append(out, r)

		tick = tick.Add(cfg.PersistentEvery)
		if late := time.Since(tick); late > 0 { // skip the ticks a slow request overran
			tick = tick.Add((late/cfg.PersistentEvery + 1) * cfg.PersistentEvery)
		}
	}
	if conn != nil {
		drop("")
	}
	return out
}

func dial(ctx context.Context, cfg *Config, deadline time.Time) (net.Conn, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := cfg.Dial(dctx, "tcp", cfg.Target)
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return c, nil
}

func fail(ctx context.Context, r *Result, class string, err error) {
	if class == ErrTimeout && ended(ctx) {
		class = ErrCanceled
	}
	r.Err = class
	if err != nil {
		r.Detail = err.Error()
	}
}

// ended reports whether ctx is done or past its deadline (a dial can see
// the deadline pass before ctx's own timer marks it done).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

type exchangeResult struct {
	status int
	node   string
	close  bool // the connection cannot carry another request
	class  string
	err    error
}

// exchange writes req and reads one complete response within deadline.
func exchange(ctx context.Context, conn net.Conn, br *reader, req []byte, deadline time.Time) (ex exchangeResult) {
	conn.SetDeadline(deadline)
	if err := ctx.Err(); err != nil {
		ex.class, ex.err = ErrCanceled, err
		return
	}
	if _, err := conn.Write(req); err != nil {
		ex.class, ex.err = classify(err), err
		return
	}
	resp, err := http.ReadResponse(br.Reader, nil)
	if err != nil {
		ex.class, ex.err = classify(err), err
		if ex.class == ErrOther && br.src.eof {
			// A head cut short by the server's FIN can read as malformed.
			ex.class = ErrEOF
		}
		return
	}
	ex.status, ex.node, ex.close = resp.StatusCode, resp.Header.Get("X-Shoal-Node"), resp.Close
	n, err := io.Copy(io.Discard, resp.Body)
	chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		ex.class, ex.err = ErrBadBody, fmt.Errorf("body ended after %d of %d bytes: %w", n, resp.ContentLength, err)
	case err != nil:
		ex.class, ex.err = classify(err), err
	case resp.ContentLength < 0 && !chunked:
		ex.class, ex.err = ErrBadBody, fmt.Errorf("no Content-Length (%d bytes up to close)", n)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		ex.class, ex.err = ErrBadBody, fmt.Errorf("body has %d bytes, Content-Length %d", n, resp.ContentLength)
	case br.Buffered() > 0:
		ex.class, ex.err = ErrBadBody, fmt.Errorf("%d bytes after the body", br.Buffered())
	case resp.StatusCode != http.StatusOK:
		ex.class, ex.err = ErrBadStatus, errors.New(resp.Status)
	}
	if ex.class != "" {
		ex.close = true
	}
	return
}

// reader buffers a connection and remembers whether it reached EOF.
type reader struct {
	*bufio.Reader
	src *eofReader
}

type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func newReader(c net.Conn) *reader {
	src := &eofReader{r: c}
	return &reader{Reader: bufio.NewReaderSize(src, 4096), src: src}
}

// idleState peeks at an idle keep-alive connection without blocking: ""
// while it is usable, "idle-close" once the server sent FIN, "idle-reset"
// once it sent RST.
func idleState(c net.Conn) string {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return ""
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return ""
	}
	var (
		b    [1]byte
		n    int
		rerr error
	)
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return ""
	}
	switch {
	case rerr == nil && n == 0:
		return "idle-close"
	case errors.Is(rerr, syscall.ECONNRESET):
		return "idle-reset"
	}
	return "" // EAGAIN: nothing waiting; stray bytes fail the next response
}

// classify maps a connection error to its Result.Err class.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return ErrCanceled
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return ErrReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ErrUnreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT), errors.As(err, &ne) && ne.Timeout():
		return ErrTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrEOF
	}
	return ErrOther
}
