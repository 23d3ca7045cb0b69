package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/tcprepair"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// Serve serves the channel on ln (the node address, Config.Port): it
// restores the connections other nodes hand over and gives each, live,
// to adopt with its origin's node ID, on a goroutine of its own. It
// returns ln.Accept's error, after closing the channel connections it
// served.
func (m *Mover) Serve(ln net.Listener, adopt func(c *net.TCPConn, origin string)) error {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for delay := time.Duration(0); ; {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // EMFILE and kin surface as temporary
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serveConn(c, adopt)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

// serveConn handles one channel connection's frames in turn until the
// peer closes it or a frame is refused.
func (m *Mover) serveConn(c net.Conn, adopt func(*net.TCPConn, string)) {
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		raw, err := wire.ReadFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				m.stats.refused(err) // bad magic, version or length; a broken stream ("io")
				m.c.Log.Warn("handoff channel: frame refused", "from", c.RemoteAddr(), "err", err)
			}
			return
		}
		msg, err := m.ep.Open(raw)
		if err != nil {
			// No answer: an unauthentic frame has no sender to answer,
			// and an authentic but stale, replayed or misaddressed one
			// gets the same silence. Closing the connection tells a real
			// origin at once that its handoff is lost.
			m.stats.refused(err)
			m.c.Log.Warn("handoff channel: frame refused", "from", c.RemoteAddr(), "reason", wire.ReasonOf(err), "err", err)
			return
		}
		h, ok := msg.Body.(*wire.Handoff)
		if !ok {
			m.stats.refusedAs("unexpected")
			m.c.Log.Warn("handoff channel: unexpected frame", "from", msg.Sender, "type", msg.Type)
			return
		}
		if !m.take(c, msg, h, adopt) {
			return
		}
	}
}

// take restores, adopts and releases one handed-over connection, in the
// order of the package contract, and answers. false ends the channel
// connection.
func (m *Mover) take(c net.Conn, msg wire.Message, h *wire.Handoff, adopt func(*net.TCPConn, string)) bool {
	start := m.c.Now()
	flow := Flow{Client: h.Client, VIP: h.VIP, ClientNext: h.State.RecvSeq + uint32(len(h.State.RecvQueue))}
	refuse := func(cause string, wc wire.Cause, err error) bool {
		m.stats.failed(cause)
		m.c.Log.Warn("handoff refused", "from", msg.Sender, "client", h.Client, "cause", cause, "err", err)
		detail := err.Error()
		if len(detail) > 255 {
			detail = detail[:255]
		}
		return m.answer(c, msg, &wire.Refuse{Cause: wc, Detail: detail})
	}
	restored, err := tcprepair.Restore(h.VIP, h.Client, &h.State, tcprepair.Options{})
	if err != nil {
		return refuse(CauseRestore, wire.CauseRestore, err)
	}
	// Adopt before Release: the socket leaves repair mode (and probes the
	// client) only once this node's data plane delivers the flow here.
	ctx, cancel := context.WithTimeout(context.Background(), m.c.Timeout)
	err = m.c.DataPlane.Adopt(ctx, flow)
	cancel()
	if err != nil {
		restored.Abort() // silent: still in repair mode
		m.forget(flow)   // an Adopt that timed out may still take effect
		return refuse(CauseAdopt, wire.CauseAdopt, err)
	}
	conn, err := restored.Release()
	if err != nil {
		var te *tcprepair.Error
		if errors.As(err, &te) && te.Step == fmt.Sprintf("TCP_REPAIR=%d", unix.TCP_REPAIR_OFF) {
			// Still in repair mode: abort silently and refuse, and the
			// origin thaws.
			restored.Abort()
			m.forget(flow)
			return refuse(CauseRelease, wire.CauseRestore, err)
		}
		// The socket went live and failed: the connection is lost here
		// whatever happens, and a REFUSE would make the origin thaw a
		// second live socket on it. Answer nothing and end the channel
		// connection, so the origin closes its frozen socket at once.
		m.stats.failed(CauseRelease)
		m.forget(flow)
		m.c.Log.Warn("handoff: releasing the restored socket failed; the connection is lost", "from", msg.Sender, "client", h.Client, "err", err)
		return false
	}
	m.stats.adopted(h.Reason)
	ok := m.answer(c, msg, &wire.Accept{RestoreMicros: uint32(min(m.c.Now().Sub(start).Microseconds(), 1<<32-1))})
	go adopt(conn, msg.Sender)
	return ok
}

// forget undoes an Adopt, logging a failure (the flow then times out in
// the data plane).
func (m *Mover) forget(f Flow) {
	ctx, cancel := context.WithTimeout(context.Background(), m.c.Timeout)
	defer cancel()
	if err := m.c.DataPlane.Forget(ctx, f); err != nil {
		m.c.Log.Warn("handoff: forgetting an aborted flow failed", "client", f.Client, "err", err)
	}
}

// answer seals and sends an ACCEPT or REFUSE; false if it could not.
func (m *Mover) answer(c net.Conn, msg wire.Message, body wire.Body) bool {
	frame, err := m.ep.Seal(msg.Sender, msg.HandoffID, body)
	if err == nil {
		c.SetWriteDeadline(time.Now().Add(m.c.Timeout))
		_, err = c.Write(frame)
	}
	if err != nil {
		m.stats.failed(CauseAnswer)
		m.c.Log.Warn("handoff: answering failed", "to", msg.Sender, "err", err)
		return false
	}
	return true
}
