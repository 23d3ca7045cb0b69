package dataplane

/*
#include <errno.h>
#include "worker.h"
*/
import "C"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/dataplane/report"
)

// The command channel (cmd.h): Go posts a command into a worker's ring and
// waits for its completion with a deadline; the worker runs it between
// bursts. The ring owns all command memory, so a command whose waiter gave
// up can never make the worker write into freed memory.

var (
	// ErrNoFlow: Remove found no flow of the tuple.
	ErrNoFlow = errors.New("dataplane: no such flow")
	// ErrTableFull: the flow table (or its half-open share) is full.
	ErrTableFull = errors.New("dataplane: flow table full")
	// ErrNotRunning: the worker is not running, so nobody runs commands.
	ErrNotRunning = errors.New("dataplane: worker not running")
	// ErrBusy: the worker's ring had no free slot until the deadline: it
	// has fallen behind by CommandSlots commands.
	ErrBusy = errors.New("dataplane: command ring full")
)

// The command channel's bounds (cmd.h).
const (
	CommandSlots         = C.SDP_CMD_SLOTS      // commands in flight per worker
	CommandsPerIteration = C.SDP_CMD_PER_ITER   // commands a worker completes per loop iteration, at most
	DumpScanSlots        = C.SDP_CMD_SCAN_SLOTS // flow-table slots a dump scans per loop iteration, at most
	DumpChunkFlows       = C.SDP_CMD_DUMP_MAX   // flows one dump command returns, at most
)

// DefaultCommandTimeout bounds a command whose context has no deadline,
// and each chunk of a flow dump.
const DefaultCommandTimeout = 2 * time.Second

// Tuple names a TCP flow by its client-side 4-tuple: the client's address
// and port, and the VIP with the service port.
type Tuple struct {
	Client netip.AddrPort
	VIP    netip.AddrPort
}

func (t Tuple) String() string { return t.Client.String() + "->" + t.VIP.String() }

// FlowSpec is a flow to install: what connection handoff gives the
// destination's data plane when it adopts an established connection.
type FlowSpec struct {
	Tuple
	State    State  // SynRcvd or Established
	ISN      uint32 // our initial sequence number, as the kernel chose it
	ISNKnown bool   // ISN is set; a SynRcvd flow without it loses any ACK
	// ClientNext is the client's next sequence number: its ISN+1 for a
	// SynRcvd flow, the socket's rcv_nxt for an adopted one. The worker
	// checks the client's RST and FIN against the window from it.
	ClientNext uint32
}

// command is one posted command and what its waiter got back.
type command struct {
	args       C.struct_sdp_cmd_args
	slot       C.uint32_t
	status     int32
	count      uint32
	nextCursor uint32
	flows      []C.struct_sdp_flow // DUMP: copied out of the slot
}

// run posts c to worker i and waits for its completion until ctx ends
// (DefaultCommandTimeout if ctx has no deadline).
func (r *Runtime) run(ctx context.Context, i int, c *command) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCommandTimeout)
		defer cancel()
	}
	r.use.RLock()
	defer r.use.RUnlock()
	if r.freed || i >= len(r.workers) {
		return ErrNotRunning
	}
	w := r.workers[i]
	ring := &w.cmds
	if C.sdp_worker_running(w) == 0 {
		return fmt.Errorf("worker %d: %w", r.lcores[i], ErrNotRunning)
	}
	// A full ring is back-pressure: wait for a slot until the deadline.
	var wt waiter
	for {
		r.posts[i].Lock()
		rc := C.sdp_cmd_post(ring, &c.args)
		r.posts[i].Unlock()
		if rc >= 0 {
			c.slot = C.uint32_t(rc)
			break
		}
		if rc != -C.EBUSY {
			return fmt.Errorf("dataplane: worker %d refused command %d: error %d", r.lcores[i], c.args.op, -rc)
		}
		if C.sdp_worker_running(w) == 0 {
			return fmt.Errorf("worker %d: %w", r.lcores[i], ErrNotRunning)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("worker %d: %w (%w)", r.lcores[i], ErrBusy, ctx.Err())
		}
		wt.wait()
	}
	slot := c.slot
	wt = waiter{}
	woken := false
	for {
		if C.sdp_cmd_slot_state(ring, slot) == C.SDP_SLOT_DONE {
			break
		}
		var why error
		if C.sdp_worker_running(w) == 0 {
			why = ErrNotRunning
		} else if ctx.Err() != nil {
			why = ctx.Err()
		}
		if why != nil {
			if C.sdp_cmd_abandon(ring, slot) == 1 {
				return fmt.Errorf("dataplane: worker %d did not complete command %d (it may still take effect): %w",
					r.lcores[i], c.args.op, why)
			}
			break // completed meanwhile
		}
		if !woken && wt.spun() {
			// Not done after the spin: the worker is most likely in its
			// idle sleep. A worker that is awake is never signalled.
			wakeWorker(w)
			woken = true
		}
		wt.wait()
	}
	s := &ring.slots[slot]
	c.status, c.count, c.nextCursor = int32(s.status), uint32(s.count), uint32(s.next_cursor)
	if c.args.op == C.SDP_CMD_DUMP && c.count > 0 {
		c.flows = append([]C.struct_sdp_flow(nil), unsafe.Slice(s.buf, c.count)...)
	}
	C.sdp_cmd_release(ring, slot)
	if c.status == -C.ENOSPC {
		return ErrTableFull
	}
	if c.status != 0 {
		return fmt.Errorf("dataplane: worker %d: command %d failed: error %d", r.lcores[i], c.args.op, -c.status)
	}
	return nil
}

// The wait for a command. A worker that is awake completes a command
// within one loop iteration (microseconds), so the waiter first yields for
// waitSpin, then sleeps waitFirstSleep doubling to waitMaxSleep. The sleeps
// are nanosleep(2) on the waiting thread, not time.Sleep: the Go runtime
// rounds a timer under 1 ms up to 1 ms on Linux (its netpoller waits in
// whole milliseconds when no other timer is due), which made every
// command, and so every handoff's Adopt and Withdraw, take about 1 ms.
const (
	waitSpin       = 20 * time.Microsecond
	waitFirstSleep = 10 * time.Microsecond
	waitMaxSleep   = 200 * time.Microsecond
)

type waiter struct {
	start time.Time
	pause time.Duration
}

// spun says whether the waiter has yielded for waitSpin already.
func (wt *waiter) spun() bool { return !wt.start.IsZero() && time.Since(wt.start) >= waitSpin }

func (wt *waiter) wait() {
	if wt.start.IsZero() {
		wt.start, wt.pause = time.Now(), waitFirstSleep
	}
	if time.Since(wt.start) < waitSpin {
		runtime.Gosched()
		return
	}
	preciseSleep(wt.pause)
	wt.pause = min(2*wt.pause, waitMaxSleep)
}

// preciseSleep sleeps d on the calling thread with a timer slack of 1 ns,
// which the thread keeps: shoal starts every thread with a slack of
// 500 µs for the runtime's own naps (internal/timerslack), which would
// stretch a 10 µs sleep here, and so a handoff's Adopt or Withdraw, by up
// to half a millisecond. The goroutine stays on its thread between the
// prctl and the sleep.
func preciseSleep(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	ts := unix.NsecToTimespec(d.Nanoseconds())
	unix.Nanosleep(&ts, nil)
}

// wakeSignal is sent to the worker thread when a command is not done
// after waitSpin: it
// ends the worker's idle nanosleep (up to dataplane.idle_sleep_max_us) at
// once, so the command runs on the next loop iteration instead of after
// the sleep. SIGURG is the Go runtime's own preemption signal, which its
// handler ignores on a thread that is not Go's (the worker is a DPDK
// lcore thread) without touching the thread; a system call other than the
// sleep is restarted (SA_RESTART). With GODEBUG=asyncpreemptoff=1 the
// runtime would treat it as a foreign signal instead, so no signal is sent
// then and a command waits for the sleep to end.
const wakeSignal = unix.SIGURG

var wakeOff = strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1")

func wakeWorker(w *C.struct_sdp_worker) {
	if wakeOff {
		return
	}
	if tid := int(C.sdp_worker_tid(w)); tid > 0 {
		unix.Tgkill(os.Getpid(), tid, wakeSignal)
	}
}

// key fills a command's flow key from t, checking that t is an IPv4 flow
// to this data plane's VIP.
func (r *Runtime) key(a *C.struct_sdp_cmd_args, t Tuple) error {
	if !t.Client.Addr().Is4() || !t.VIP.Addr().Is4() {
		return fmt.Errorf("dataplane: flow %v: not IPv4", t)
	}
	if t.VIP.Addr() != r.vip {
		return fmt.Errorf("dataplane: flow %v: %v is not the VIP %v", t, t.VIP.Addr(), r.vip)
	}
	s, d := t.Client.Addr().As4(), t.VIP.Addr().As4()
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], t.Client.Port())
	binary.BigEndian.PutUint16(p[2:], t.VIP.Port())
	// Memory order = wire order, as in the flow table.
	a.saddr = C.uint32_t(binary.LittleEndian.Uint32(s[:]))
	a.daddr = C.uint32_t(binary.LittleEndian.Uint32(d[:]))
	a.sport = C.uint16_t(binary.LittleEndian.Uint16(p[0:]))
	a.dport = C.uint16_t(binary.LittleEndian.Uint16(p[2:]))
	return nil
}

// workerFor is the worker whose queues carry t's packets. This release
// runs one worker per node (NewRuntime enforces it); with several, it is
// the queue the NIC's RSS hash gives the tuple.
func (r *Runtime) workerFor(Tuple) int { return 0 }

// Install inserts a flow into the table of the worker that sees its
// packets, or overwrites the flow the worker holds for the tuple (a
// tombstone included), and restarts its timer. From then on the worker
// delivers the flow's packets to this node's kernel. ErrTableFull when
// the table (for SynRcvd, its half-open share) is full.
func (r *Runtime) Install(ctx context.Context, f FlowSpec) error {
	if f.State != SynRcvd && f.State != Established {
		return fmt.Errorf("dataplane: install %v: state %v; only syn_rcvd and established can be installed", f.Tuple, f.State)
	}
	c := command{args: C.struct_sdp_cmd_args{op: C.SDP_CMD_INSTALL, state: C.uint8_t(f.State), isn: C.uint32_t(f.ISN), cnxt: C.uint32_t(f.ClientNext)}}
	if f.ISNKnown {
		c.args.flags = C.SDP_F_ISN_KNOWN
	}
	if err := r.key(&c.args, f.Tuple); err != nil {
		return err
	}
	return r.run(ctx, r.workerFor(f.Tuple), &c)
}

// Remove deletes the flow of t. ErrNoFlow if the worker held none.
func (r *Runtime) Remove(ctx context.Context, t Tuple) error {
	c := command{args: C.struct_sdp_cmd_args{op: C.SDP_CMD_REMOVE}}
	if err := r.key(&c.args, t); err != nil {
		return err
	}
	if err := r.run(ctx, r.workerFor(t), &c); err != nil {
		return err
	}
	if c.count == 0 {
		return fmt.Errorf("dataplane: remove %v: %w", t, ErrNoFlow)
	}
	return nil
}

// Withdraw lets a flow go the way the overlap guard does: the tuple
// becomes a tombstone for TombstoneTime, during which the client's
// packets are dropped as foreign and this node's kernel's packets of the
// tuple never leave (a SYN-ACK is answered with the client's RST). A tuple
// without a flow gets a tombstone as well.
func (r *Runtime) Withdraw(ctx context.Context, t Tuple) error {
	c := command{args: C.struct_sdp_cmd_args{op: C.SDP_CMD_WITHDRAW}}
	if err := r.key(&c.args, t); err != nil {
		return err
	}
	return r.run(ctx, r.workerFor(t), &c)
}

// Flow is one entry of a worker's flow table (see package report).
type Flow = report.Flow

// Flows returns up to max flows from the running workers' tables. Each
// worker copies its table out itself (it alone touches it), in chunks of
// at most DumpChunkFlows flows, scanning at most DumpScanSlots table
// slots per loop iteration, so a dump of a million flows never holds up
// the packets for long. The dump is not a snapshot: a flow inserted or
// removed meanwhile may be missing, and one moved by a deletion across the
// end of the table may appear twice. Each chunk must complete within
// DefaultCommandTimeout.
func (r *Runtime) Flows(max int) ([]Flow, error) {
	if max <= 0 {
		return nil, nil
	}
	now := uint32(C.sdp_now_ms())
	var out []Flow
	for i := range r.lcores {
		cursor := uint32(0)
		for len(out) < max {
			c := command{args: C.struct_sdp_cmd_args{op: C.SDP_CMD_DUMP,
				cursor: C.uint32_t(cursor), max: C.uint32_t(min(max-len(out), DumpChunkFlows))}}
			err := r.run(context.Background(), i, &c)
			if errors.Is(err, ErrNotRunning) {
				break
			}
			if err != nil {
				return out, err
			}
			for _, f := range c.flows {
				out = append(out, Flow{
					Client:   netip.AddrPortFrom(addrOf(uint32(f.saddr)), ntohs(uint16(f.sport))).String(),
					VIP:      netip.AddrPortFrom(addrOf(uint32(f.daddr)), ntohs(uint16(f.dport))).String(),
					State:    State(f.state).String(),
					Bucket:   uint16(f.bucket),
					ExpireMS: int64(int32(uint32(f.expire_ms) - now)),
					Worker:   r.lcores[i],
				})
			}
			if c.nextCursor == 0 {
				break
			}
			cursor = c.nextCursor
		}
	}
	return out, nil
}
