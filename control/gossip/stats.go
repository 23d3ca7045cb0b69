package gossip

import "maps"

// Stats are cumulative counters since Start, plus current member counts.
type Stats struct {
	MembersAlive    int `json:"members_alive"`    // len(Members()), this node included
	MembersExcluded int `json:"members_excluded"` // alive peers left out of Members for a rejected meta

	// MetaRejected counts peer metas rejected, by reason. A peer is counted
	// each time its meta changes or it rejoins, not per gossip round.
	MetaRejected map[Reason]uint64 `json:"meta_rejected"`
	MetaClamped  uint64            `json:"meta_clamped"` // peer metas accepted after Sanitize clamped a value

	// RefusedMessages counts packets and streams this node could not
	// decrypt, or that had the wrong encryption mode: a peer with another
	// cluster key, a plaintext peer, or noise.
	RefusedMessages uint64 `json:"refused_messages"`
	NodeIDConflicts uint64 `json:"node_id_conflicts"` // members seen claiming a known node ID from another address
	JoinFailures    uint64 `json:"join_failures"`     // Join calls (including rejoin retries) that failed

	PacketsSent     uint64 `json:"packets_sent"` // UDP
	PacketsReceived uint64 `json:"packets_received"`
	StreamsDialed   uint64 `json:"streams_dialed"` // TCP push/pull, joins, fallback pings
	StreamsAccepted uint64 `json:"streams_accepted"`
	BytesSent       uint64 `json:"bytes_sent"` // UDP and TCP
	BytesReceived   uint64 `json:"bytes_received"`
}

// Stats returns a snapshot of the counters.
func (g *Gossip) Stats() Stats {
	g.mu.Lock()
	s := Stats{MetaRejected: maps.Clone(g.rejected), MetaClamped: g.clamped}
	for _, p := range g.peers {
		if p.ok {
			s.MembersAlive++
		} else {
			s.MembersExcluded++
		}
	}
	g.mu.Unlock()
	s.MembersAlive++ // self
	s.RefusedMessages = g.refused.Load()
	s.NodeIDConflicts = g.conflicts.Load()
	s.JoinFailures = g.joinFailures.Load()
	c := g.tr.c
	s.PacketsSent = c.packetsSent.Load()
	s.PacketsReceived = c.packetsReceived.Load()
	s.StreamsDialed = c.streamsDialed.Load()
	s.StreamsAccepted = c.streamsAccepted.Load()
	s.BytesSent = c.bytesSent.Load()
	s.BytesReceived = c.bytesReceived.Load()
	return s
}
