package front

import (
	"sync"
	"sync/atomic"

	"github.com/shoal-lb/shoal/handoff/relay"
)

// Stats is a snapshot of the front server's counters.
type Stats struct {
	// HTTP and TLS count per listener kind.
	HTTP ListenerStats `json:"http"`
	TLS  ListenerStats `json:"tls"`
	// Decisions counts where complete heads were sent.
	Decisions DecisionStats `json:"decisions"`
	// Moves counts Config.Move calls and their outcomes.
	Moves MoveStats `json:"moves"`
	// Relays counts connections relayed to their node.
	Relays RelayStats `json:"relays"`
	// FallbackLocal counts connections served here because a remote node
	// could be neither moved to nor relayed to.
	FallbackLocal uint64 `json:"fallback_local"`
	// Alternate counts connections sent to another node because their
	// destination could be neither moved to nor relayed to (Config.Alternate);
	// AlternateLocal those that alternative served here.
	Alternate      uint64 `json:"alternate"`
	AlternateLocal uint64 `json:"alternate_local"`
	// Active is the number of connections the front holds now (not yet
	// given away, or in a Local call that has not returned).
	Active int64 `json:"active"`
}

// ListenerStats counts what one kind of listener accepted and refused.
type ListenerStats struct {
	Accepted     uint64 `json:"accepted"`
	AcceptErrors uint64 `json:"accept_errors"`
	// Complete counts heads read whole.
	Complete uint64 `json:"complete"`
	// Refused counts the heads not read whole by peek verdict (bad,
	// too_large, timeout, closed), Reasons the same by peek.ReasonOf.
	Refused map[string]uint64 `json:"refused"`
	Reasons map[string]uint64 `json:"reasons"`
	// Answered counts refusals answered with an HTTP status, by status.
	Answered map[string]uint64 `json:"answered"`
}

// DecisionStats counts decisions.
type DecisionStats struct {
	Local uint64 `json:"local"`
	// Remote counts decisions for another node by wire.Reason (group,
	// session, version).
	Remote map[string]uint64 `json:"remote"`
	// NoMember counts heads whose group had no member available: served
	// locally, and not counted in Local.
	NoMember uint64 `json:"no_member"`
}

// MoveStats counts handoffs.
type MoveStats struct {
	OK uint64 `json:"ok"`
	// FailedIntact counts moves that failed with the connection still
	// usable (then relayed or served locally); FailedLost those that lost
	// it.
	FailedIntact uint64 `json:"failed_intact"`
	FailedLost   uint64 `json:"failed_lost"`
}

// RelayStats counts relays (relay.Counters) and relay dials that failed.
type RelayStats struct {
	Started    uint64 `json:"started"`
	Finished   uint64 `json:"finished"`
	Failed     uint64 `json:"failed"`
	Active     int64  `json:"active"`
	ToUpstream uint64 `json:"bytes_to_upstream"`
	ToClient   uint64 `json:"bytes_to_client"`
	DialFailed uint64 `json:"dial_failed"`
}

// labelled is a set of counters by label, lock-free once a label exists.
type labelled struct{ m sync.Map } // string → *atomic.Uint64

func (l *labelled) add(label string) {
	v, ok := l.m.Load(label)
	if !ok {
		v, _ = l.m.LoadOrStore(label, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

func (l *labelled) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	l.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

type listenerCounters struct {
	accepted, acceptErrors, complete atomic.Uint64
	refused, reasons, answered       labelled
}

func (c *listenerCounters) snapshot() ListenerStats {
	return ListenerStats{
		Accepted:     c.accepted.Load(),
		AcceptErrors: c.acceptErrors.Load(),
		Complete:     c.complete.Load(),
		Refused:      c.refused.snapshot(),
		Reasons:      c.reasons.snapshot(),
		Answered:     c.answered.snapshot(),
	}
}

type counters struct {
	http, tls                      listenerCounters
	local, noMember                atomic.Uint64
	remote                         labelled
	moveOK, moveIntact, moveLost   atomic.Uint64
	relay                          relay.Counters
	relayDialFailed, fallbackLocal atomic.Uint64
	alternate, alternateLocal      atomic.Uint64
	active                         atomic.Int64
}

func (c *counters) listener(tls bool) *listenerCounters {
	if tls {
		return &c.tls
	}
	return &c.http
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.n
	return Stats{
		HTTP: c.http.snapshot(),
		TLS:  c.tls.snapshot(),
		Decisions: DecisionStats{
			Local:    c.local.Load(),
			Remote:   c.remote.snapshot(),
			NoMember: c.noMember.Load(),
		},
		Moves: MoveStats{OK: c.moveOK.Load(), FailedIntact: c.moveIntact.Load(), FailedLost: c.moveLost.Load()},
		Relays: RelayStats{
			Started:    c.relay.Started.Load(),
			Finished:   c.relay.Finished.Load(),
			Failed:     c.relay.Failed.Load(),
			Active:     c.relay.Active.Load(),
			ToUpstream: c.relay.ToUpstream.Load(),
			ToClient:   c.relay.ToClient.Load(),
			DialFailed: c.relayDialFailed.Load(),
		},
		FallbackLocal:  c.fallbackLocal.Load(),
		Alternate:      c.alternate.Load(),
		AlternateLocal: c.alternateLocal.Load(),
		Active:         c.active.Load(),
	}
}
