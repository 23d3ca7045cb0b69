package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/handoff/tcprepair"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// Serve serves the channel on ln (the node address, Config.Port): it
// restores the connections other nodes hand over and gives each, live,
// to adopt with its origin's node ID, on a goroutine of its own. A
// connection from an address Config.IsMember refuses, or beyond
// MaxConnsPerPeer or MaxConns, is closed at once and counted.
//
// When ln.Accept fails (ln closed) Serve drains: new HANDOFFs on the
// connections still open are refused "draining", the handoffs in flight
// finish and answer (each within half of Config.Timeout), then Serve
// closes the channel connections and returns ln.Accept's error.
func (m *Mover) Serve(ln net.Listener, adopt func(c *net.TCPConn, origin string)) error {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	perPeer := map[netip.Addr]int{}
	var wg sync.WaitGroup
	defer func() {
		m.Drain()
		m.waitTakes(m.c.Timeout)
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
		src := sourceOf(c)
		if m.c.IsMember != nil && !m.c.IsMember(src) {
			m.stats.refusedAs("not_member")
			m.c.Log.Debug("handoff channel: connection from a non-member closed", "from", c.RemoteAddr())
			c.Close()
			continue
		}
		mu.Lock()
		if len(conns) >= MaxConns || perPeer[src] >= MaxConnsPerPeer {
			mu.Unlock()
			m.stats.refusedAs("too_many")
			m.c.Log.Debug("handoff channel: connection over the cap closed", "from", c.RemoteAddr(), "per_peer", MaxConnsPerPeer, "total", MaxConns)
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		perPeer[src]++
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serveConn(c, adopt)
			c.Close()
			mu.Lock()
			delete(conns, c)
			if perPeer[src]--; perPeer[src] == 0 {
				delete(perPeer, src)
			}
			mu.Unlock()
		}()
	}
}

func sourceOf(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}

// waitTakes waits up to d for the handoffs in flight.
func (m *Mover) waitTakes(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m.takes.wait(ctx.Done())
}

// readFrame reads the next frame on a channel connection: the first byte
// within the idle timeout (an idle pooled connection), then the rest of
// the header, and then the body, each within Timeout. ok=false means the
// connection ended quietly (closed, or idle too long).
func (m *Mover) readFrame(c net.Conn, r *bufio.Reader, idle time.Duration) (raw []byte, ok bool, err error) {
	c.SetReadDeadline(time.Now().Add(idle))
	if _, err := r.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, false, nil
		}
		return nil, false, err
	}
	c.SetReadDeadline(time.Now().Add(m.c.Timeout))
	raw, err = wire.ReadFrameWith(r, func(int) { c.SetReadDeadline(time.Now().Add(m.c.Timeout)) })
	return raw, err == nil, err
}

// refuseFrame counts and logs (at debug level: a scanner must not flood
// the log) a frame or stream this node does not act on.
func (m *Mover) refuseFrame(c net.Conn, err error) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		m.stats.refusedAs("deadline")
	default:
		m.stats.refused(err) // bad magic, version or length; a broken stream ("io")
	}
	m.c.Log.Debug("handoff channel: frame refused", "from", c.RemoteAddr(), "reason", wire.ReasonOf(err), "err", err)
}

// serveConn handles one channel connection's handoffs in turn until the
// peer closes it, it idles out, or a frame is refused.
func (m *Mover) serveConn(c net.Conn, adopt func(*net.TCPConn, string)) {
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		raw, ok, err := m.readFrame(c, r, m.c.IdleTimeout)
		if !ok {
			if err != nil && !errors.Is(err, net.ErrClosed) {
				m.refuseFrame(c, err)
			}
			return
		}
		receipt := m.c.Now()
		msg, err := m.ep.Open(raw)
		if err != nil {
			// No answer: an unauthentic frame has no sender to answer,
			// and an authentic but stale, replayed or misaddressed one
			// gets the same silence. Closing the connection tells a real
			// origin at once that its handoff did not happen.
			m.refuseFrame(c, err)
			return
		}
		h, ok := msg.Body.(*wire.Handoff)
		if !ok {
			m.stats.refusedAs("unexpected")
			m.c.Log.Debug("handoff channel: unexpected frame", "from", msg.Sender, "type", msg.Type)
			return
		}
		if m.draining.Load() {
			m.stats.failed(CauseDraining)
			if !m.send(c, msg, &wire.Refuse{Cause: wire.CauseDraining, Detail: "the node is stopping"}, time.Now().Add(m.c.Timeout)) {
				return
			}
			continue
		}
		m.takes.add()
		ok = m.take(c, r, receipt, msg, h, adopt)
		m.takes.done()
		if !ok {
			return
		}
	}
}

// take restores and adopts one handed-over connection, answers READY,
// waits for COMMIT, releases and answers ACCEPT, in the order of the
// package contract, all within half of Timeout from the HANDOFF's
// receipt; otherwise it undoes what it did and refuses. false ends the
// channel connection.
func (m *Mover) take(c net.Conn, r *bufio.Reader, receipt time.Time, msg wire.Message, h *wire.Handoff, adopt func(*net.TCPConn, string)) bool {
	clk := newStepClock(m.c.Now, receipt)
	clk.mark(StepOpen)
	budget := m.c.Timeout / 2
	deadline := time.Now().Add(budget - m.c.Now().Sub(receipt))
	flow := Flow{Client: h.Client, VIP: h.VIP, ClientNext: h.State.RecvSeq + uint32(len(h.State.RecvQueue))}
	refuse := func(cause string, wc wire.Cause, err error) bool {
		m.stats.failed(cause)
		m.c.Log.Warn("handoff refused", "from", msg.Sender, "client", h.Client, "cause", cause, "err", err)
		detail := err.Error()
		if len(detail) > 255 {
			detail = detail[:255]
		}
		return m.send(c, msg, &wire.Refuse{Cause: wc, Detail: detail}, time.Now().Add(m.c.Timeout))
	}
	restored, err := tcprepair.Restore(h.VIP, h.Client, &h.State, tcprepair.Options{})
	if err != nil {
		return refuse(CauseRestore, wire.CauseRestore, err)
	}
	clk.mark(StepRestore)
	// drop forgets the flow, then aborts the silent socket (in repair mode
	// behind its filter): in that order, as the origin closes its frozen
	// socket only after its withdrawal. Aborted first, the socket would
	// leave this node's kernel receiving the flow with no socket for it
	// while Forget runs, and it answers the client's segments (the origin
	// thaws and the connection goes on there) with resets.
	drop := func() error {
		ferr := m.forget(flow)
		restored.Abort()
		return ferr
	}
	// undo drops the restored connection; a REFUSE may follow only if the
	// data plane forgot the flow (else this node's kernel receives it with
	// no socket for it, and the origin must not be told it may simply go
	// on): silence, and the channel closes.
	undo := func(cause string, wc wire.Cause, err error) bool {
		if ferr := drop(); ferr != nil {
			m.stats.failed(cause)
			m.c.Log.Warn("handoff aborted; forgetting the flow failed, so no REFUSE", "from", msg.Sender, "client", h.Client, "cause", cause, "err", err, "forget", ferr)
			return false
		}
		return refuse(cause, wc, err)
	}
	// Adopt before READY: the origin commits, and the socket leaves repair
	// mode (and probes the client), only once this node's data plane
	// delivers the flow here.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err = m.c.DataPlane.Adopt(ctx, flow)
	cancel()
	if err != nil {
		return undo(CauseAdopt, wire.CauseAdopt, err) // an Adopt that timed out may still take effect
	}
	clk.mark(StepAdopt)
	over := func(step string) error {
		return fmt.Errorf("%s %v after the HANDOFF arrived; the budget is %v", step, m.c.Now().Sub(receipt).Round(time.Microsecond), budget)
	}
	if time.Now().After(deadline) {
		return undo(CauseBudget, wire.CauseBusy, over("READY"))
	}
	ready := uint32(min(m.c.Now().Sub(receipt).Microseconds(), 1<<32-1))
	if !m.send(c, msg, &wire.Ready{RestoreMicros: ready}, deadline) {
		drop()
		return false
	}
	clk.mark(StepReadySent)
	// COMMIT, within the budget.
	c.SetReadDeadline(deadline)
	raw, err := wire.ReadFrame(r)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return undo(CauseNoCommit, wire.CauseBusy, fmt.Errorf("no COMMIT %v", over("within")))
		}
		var we *wire.Error
		if errors.As(err, &we) {
			m.refuseFrame(c, err)
		}
		m.stats.failed(CauseNoCommit)
		drop()
		m.c.Log.Warn("handoff aborted: the channel broke before COMMIT", "from", msg.Sender, "client", h.Client, "err", err)
		return false
	}
	cm, err := m.ep.Open(raw)
	clk.mark(StepCommitWait)
	if err == nil && (cm.Type != wire.TypeCommit || cm.Sender != msg.Sender || cm.HandoffID != msg.HandoffID) {
		m.stats.refusedAs("unexpected")
		err = fmt.Errorf("a %v from %q for handoff %d instead of COMMIT", cm.Type, cm.Sender, cm.HandoffID)
	} else if err != nil {
		m.refuseFrame(c, err)
	}
	if err != nil {
		m.stats.failed(CauseNoCommit)
		drop()
		m.c.Log.Warn("handoff aborted: no COMMIT", "from", msg.Sender, "client", h.Client, "err", err)
		return false
	}
	if time.Now().After(deadline) {
		return undo(CauseBudget, wire.CauseBusy, over("Release"))
	}
	conn, err := restored.Release(time.Now().Add(m.c.Timeout))
	if err != nil {
		if tcprepair.Silent(err) {
			// Still in repair mode behind the filter: abort silently and
			// refuse, and the origin thaws.
			return undo(CauseRelease, wire.CauseRestore, err)
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
	clk.mark(StepRelease)
	m.stats.adopted(h.Reason)
	ok := m.send(c, msg, &wire.Accept{RestoreMicros: uint32(min(m.c.Now().Sub(receipt).Microseconds(), 1<<32-1))}, time.Now().Add(m.c.Timeout))
	if ok {
		clk.mark(StepAcceptSent)
		m.stats.steps(clk.t)
	}
	m.bg.add()
	go func() {
		defer m.bg.done()
		adopt(conn, msg.Sender)
	}()
	return ok
}

// forget undoes an Adopt, logging a failure (the flow then times out in
// the data plane).
func (m *Mover) forget(f Flow) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.c.Timeout)
	defer cancel()
	err := m.c.DataPlane.Forget(ctx, f)
	if err != nil {
		m.c.Log.Warn("handoff: forgetting an aborted flow failed", "client", f.Client, "err", err)
	}
	return err
}

// send seals and sends a READY, ACCEPT or REFUSE by deadline; false if it
// could not.
func (m *Mover) send(c net.Conn, msg wire.Message, body wire.Body, deadline time.Time) bool {
	frame, err := m.ep.Seal(msg.Sender, msg.HandoffID, body)
	if err == nil {
		c.SetWriteDeadline(deadline)
		_, err = c.Write(frame)
	}
	if err != nil {
		m.stats.failed(CauseAnswer)
		m.c.Log.Warn("handoff: answering failed", "to", msg.Sender, "type", body, "err", err)
		return false
	}
	return true
}
