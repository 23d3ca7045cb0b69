package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// Reference is the Go reference classifier: the same rules as classify.c,
// written for clarity rather than speed. Tests hold the two equal frame by
// frame; neither is the specification alone (docs/dataplane.md is).
type Reference struct {
	cfg        ClassifierConfig
	vip        [4]byte
	owner      *Ownership
	flows      map[flowKey]*refFlow
	byState    [numStates]uint32
	bucketRefs [65536]uint32
	ports      map[uint16]bool
	ctr        Counters
}

type flowKey struct {
	saddr, daddr [4]byte
	sport, dport uint16
}

type refFlow struct {
	state    State
	isnKnown bool
	isn      uint32 // our ISN, in SYN_RCVD
	expire   uint32
	bucket   uint16
	flags    uint8  // the fXxx flags below
	cnxt     uint32 // the client's next sequence number
	cfin     uint32 // the client's FIN
	sfin     uint32 // our FIN
}

// Flow flags, as in sdp.h.
const (
	fCFIN      = 0x02 // the client's FIN seen
	fSFIN      = 0x04 // our FIN seen
	fCFINAcked = 0x08 // our kernel acknowledged the client's FIN
	fSFINAcked = 0x10 // the client acknowledged our FIN
	fRST       = 0x20 // a reset was seen
)

// seqSlack mirrors SDP_SEQ_SLACK: how far a client segment may start from
// the client's next sequence number and still teach the flow anything.
// rstWindow mirrors SDP_RST_WINDOW: how far from it a client RST may be.
const (
	seqSlack  = 1 << 20
	rstWindow = 65535
)

// finished: both FINs acknowledged, or a reset seen.
func (f *refFlow) finished() bool {
	return f.flags&fRST != 0 || f.flags&(fCFINAcked|fSFINAcked) == fCFINAcked|fSFINAcked
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	ethHLen = 14
)

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// NewReference builds a reference classifier.
func NewReference(cfg ClassifierConfig) (*Reference, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Reference{cfg: cfg, vip: cfg.VIP.As4(), flows: map[flowKey]*refFlow{}, ports: map[uint16]bool{}}
	for _, p := range cfg.Ports {
		r.ports[p] = true
	}
	return r, nil
}

func (r *Reference) SetOwnership(o *Ownership) {
	cp := *o
	r.owner = &cp
}

func (r *Reference) Counters() Counters { return r.ctr }

func (r *Reference) Flows() FlowCounts {
	return FlowCounts{
		SynRcvd:     uint64(r.byState[SynRcvd]),
		Established: uint64(r.byState[Established]),
		Closing:     uint64(r.byState[Closing]),
		Withdrawn:   uint64(r.byState[Withdrawn]),
	}
}

func (r *Reference) Close() {}

func expired(now, deadline uint32) bool { return int32(now-deadline) >= 0 }

func (r *Reference) hash(k flowKey) uint32 {
	var b [12]byte
	copy(b[0:4], k.saddr[:])
	copy(b[4:8], k.daddr[:])
	binary.BigEndian.PutUint16(b[8:], k.sport)
	binary.BigEndian.PutUint16(b[10:], k.dport)
	return crcRaw(r.cfg.Seed, b[:])
}

func (r *Reference) insert(k flowKey, bucket uint16, s State) *refFlow {
	f := &refFlow{state: s, bucket: bucket}
	r.flows[k] = f
	r.byState[s]++
	r.bucketRefs[bucket]++
	return f
}

func (r *Reference) delete(k flowKey, f *refFlow) {
	delete(r.flows, k)
	r.byState[f.state]--
	r.bucketRefs[f.bucket]--
}

func (r *Reference) setState(f *refFlow, s State) {
	r.byState[f.state]--
	r.byState[s]++
	f.state = s
}

func (r *Reference) findLive(k flowKey, now uint32) *refFlow {
	f := r.flows[k]
	if f != nil && expired(now, f.expire) {
		r.delete(k, f)
		r.ctr.Expired++
		return nil
	}
	return f
}

func (r *Reference) Sweep(now uint32) int {
	n := 0
	for k, f := range r.flows {
		if expired(now, f.expire) {
			r.delete(k, f)
			n++
		}
	}
	r.ctr.Expired += uint64(n)
	return n
}

func (r *Reference) FlowState(src, dst netip.Addr, sport, dport uint16, now uint32) State {
	f := r.flows[flowKey{src.As4(), dst.As4(), sport, dport}]
	if f == nil || expired(now, f.expire) {
		return Empty
	}
	return f.state
}

func (r *Reference) owned(b uint16) bool { return r.owner != nil && r.owner.Has(b) }

func (r *Reference) ClassifyRX(frames [][]byte, now uint32) ([]Verdict, []int) {
	vs := make([]Verdict, len(frames))
	ls := make([]int, len(frames))
	for i, f := range frames {
		r.ctr.RX++
		vs[i], ls[i] = r.rxOne(f, now)
	}
	return vs, ls
}

func (r *Reference) toKernel(f []byte) Verdict {
	if [6]byte(f[0:6]) == [6]byte(r.cfg.ClusterMAC) {
		copy(f[0:6], r.cfg.NodeMAC)
	}
	r.ctr.ToKernel++
	return ToKernel
}

func (r *Reference) malformed() Verdict {
	r.ctr.MalformedDropped++
	return Drop
}

func (r *Reference) rxOne(f []byte, now uint32) (Verdict, int) {
	n := len(f)
	if n < ethHLen {
		return r.malformed(), n
	}
	dst := [6]byte(f[0:6])
	et := binary.BigEndian.Uint16(f[12:14])
	if et == 0x0800 && n >= ethHLen+20 && [4]byte(f[30:34]) == r.vip {
		return r.vipIPv4(f, now)
	}
	switch et {
	case 0x8100, 0x88a8, 0x9100:
		return r.malformed(), n
	case 0x0806:
		a := f[ethHLen:]
		if n < ethHLen+28 || binary.BigEndian.Uint16(a[0:2]) != 1 ||
			binary.BigEndian.Uint16(a[2:4]) != 0x0800 || a[4] != 6 || a[5] != 4 {
			return r.malformed(), n
		}
		if binary.BigEndian.Uint16(a[6:8]) == 1 && [4]byte(a[24:28]) == r.vip {
			r.arpReply(f)
			return ToNIC, n
		}
	case 0x0800:
		if n < ethHLen+20 {
			return r.malformed(), n
		}
	}
	if dst != [6]byte(r.cfg.NodeMAC) && dst != broadcastMAC {
		r.ctr.OtherDropped++
		return Drop, n
	}
	return r.toKernel(f), n
}

func (r *Reference) arpReply(f []byte) {
	a := f[ethHLen:]
	var reqMAC [6]byte
	var reqIP [4]byte
	copy(reqMAC[:], a[8:14])
	copy(reqIP[:], a[14:18])
	copy(f[0:6], reqMAC[:])
	copy(f[6:12], r.cfg.NodeMAC)
	binary.BigEndian.PutUint16(a[6:8], 2)
	copy(a[8:14], r.cfg.ClusterMAC)
	copy(a[14:18], r.vip[:])
	copy(a[18:24], reqMAC[:])
	copy(a[24:28], reqIP[:])
	r.ctr.ARPReplied++
	r.ctr.TX++
}

// vipIPv4 decides an IPv4 frame addressed to the VIP.
func (r *Reference) vipIPv4(f []byte, now uint32) (Verdict, int) {
	n := len(f)
	dst := [6]byte(f[0:6])
	if dst != [6]byte(r.cfg.ClusterMAC) && dst != [6]byte(r.cfg.NodeMAC) {
		r.ctr.OtherDropped++
		return Drop, n
	}
	ip := f[ethHLen:]
	if ip[0] != 0x45 {
		return r.malformed(), n
	}
	totlen := int(binary.BigEndian.Uint16(ip[2:4]))
	if totlen < 28 || ethHLen+totlen > n || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return r.malformed(), n
	}
	if ip[9] == 1 {
		return r.icmp(f, now), n
	}
	if ip[9] != 6 || totlen < 40 {
		return r.malformed(), n
	}
	tcp := ip[20:]
	doff := int(tcp[12] >> 4)
	if doff < 5 || 20+doff*4 > totlen {
		return r.malformed(), n
	}
	flags := tcp[13]
	if flags&tcpSYN != 0 && flags&(tcpRST|tcpFIN) != 0 {
		return r.malformed(), n
	}
	k := flowKey{[4]byte(ip[12:16]), [4]byte(ip[16:20]),
		binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])}
	h := r.hash(k)
	bucket := uint16(h)
	if flags&(tcpSYN|tcpACK) == tcpSYN {
		return r.syn(f, k, bucket, now), n
	}
	// (r.syn checks the checksums itself, after ownership.)
	if r.bucketRefs[bucket] == 0 {
		r.ctr.ForeignDropped++
		r.ctr.FastDropped++
		return Drop, n
	}
	fl := r.findLive(k, now)
	if fl == nil || fl.state == Withdrawn {
		r.ctr.ForeignDropped++
		return Drop, n
	}
	if !r.csumOK(ip) {
		return Drop, n
	}
	switch fl.state {
	case SynRcvd:
		if flags&tcpRST != 0 {
			if binary.BigEndian.Uint32(tcp[4:8])-fl.cnxt > rstWindow {
				r.ctr.RSTIgnored++
				break
			}
			r.delete(k, fl) // the handshake dies: nothing left to deliver
			break
		}
		if flags&tcpACK == 0 {
			break
		}
		if !fl.isnKnown || binary.BigEndian.Uint32(tcp[8:12]) != fl.isn+1 {
			// Only a segment of this handshake withdraws the flow.
			if binary.BigEndian.Uint32(tcp[4:8])-fl.cnxt > rstWindow {
				r.ctr.StrayDropped++
				return Drop, n
			}
			r.setState(fl, Withdrawn)
			fl.expire = now + uint32(TombstoneTime.Milliseconds())
			r.ctr.OverlapWithdrawn++
			n = ackToRST(f)
			break
		}
		r.setState(fl, Established)
		r.clientSeen(fl, ip, now)
	default: // Established, Closing
		if flags&tcpRST != 0 {
			r.clientRST(fl, ip, now)
		} else {
			r.clientSeen(fl, ip, now)
		}
	}
	return r.toKernel(f), n
}

// csumOK verifies the IPv4 header and TCP checksums of a validated packet
// and counts a failure.
func (r *Reference) csumOK(ip []byte) bool {
	l4 := int(binary.BigEndian.Uint16(ip[2:4])) - 20
	pseudo := append(append(make([]byte, 0, 12), ip[12:20]...), 0, 6, byte(l4>>8), byte(l4))
	if checksum(0, ip[:20]) == 0 && checksum(sum16(0, pseudo), ip[20:20+l4]) == 0 {
		return true
	}
	r.ctr.BadChecksumDropped++
	return false
}

// icmp decides ICMP to the VIP (see classify_icmp): errors quoting one of
// our flows and echo requests in our buckets go to the kernel.
func (r *Reference) icmp(f []byte, now uint32) Verdict {
	ip := f[ethHLen:]
	icmp := ip[20:int(binary.BigEndian.Uint16(ip[2:4]))]
	deliver := false
	switch {
	case icmp[0] == 8 && icmp[1] == 0:
		deliver = r.owned(uint16(r.hash(flowKey{[4]byte(ip[12:16]), r.vip, 0, 0})))
	case icmp[0] == 3 || icmp[0] == 11:
		q := icmp[8:]
		if len(q) < 20 || q[0]>>4 != 4 || q[9] != 6 || [4]byte(q[12:16]) != r.vip {
			break
		}
		ihl := int(q[0]&15) * 4
		if ihl < 20 || len(q) < ihl+8 {
			break
		}
		k := flowKey{[4]byte(q[16:20]), [4]byte(q[12:16]),
			binary.BigEndian.Uint16(q[ihl+2:]), binary.BigEndian.Uint16(q[ihl:])}
		if r.bucketRefs[uint16(r.hash(k))] == 0 {
			break
		}
		fl := r.findLive(k, now)
		deliver = fl != nil && fl.state != Withdrawn
	}
	if !deliver {
		r.ctr.ICMPDropped++
		return Drop
	}
	r.ctr.ICMPToKernel++
	return r.toKernel(f)
}

// tcpPayload is the payload length of a validated IPv4/TCP packet.
func tcpPayload(ip []byte) uint32 {
	return uint32(binary.BigEndian.Uint16(ip[2:4])) - 20 - uint32(ip[20+12]>>4)*4
}

// refresh: the idle timer while the flow may still carry data, the
// closing timer once it is finished.
func (r *Reference) refresh(fl *refFlow, now uint32) {
	if fl.finished() {
		fl.expire = now + uint32(r.cfg.Closing.Milliseconds())
	} else {
		fl.expire = now + uint32(r.cfg.Idle.Milliseconds())
	}
}

// clientSeen: a non-RST segment from the client of an established or
// closing flow (see client_seen in classify.c).
func (r *Reference) clientSeen(fl *refFlow, ip []byte, now uint32) {
	tcp := ip[20:]
	flags := tcp[13]
	seq, ack := binary.BigEndian.Uint32(tcp[4:8]), binary.BigEndian.Uint32(tcp[8:12])
	if flags&tcpACK == 0 {
		return
	}
	if fl.flags&fSFIN != 0 && ack == fl.sfin+1 {
		fl.flags |= fSFINAcked
	}
	if d := int32(seq - fl.cnxt); d >= -seqSlack && d <= seqSlack {
		l := tcpPayload(ip)
		end := seq + l
		if flags&tcpFIN != 0 {
			end++
		}
		if flags&tcpFIN != 0 && fl.flags&fCFINAcked == 0 {
			if fl.flags&fSFINAcked != 0 && ack == fl.sfin+1 && seq == fl.cnxt {
				fl.flags |= fCFINAcked
			}
			fl.cfin = seq + l
			fl.flags |= fCFIN
			if fl.state != Closing {
				r.setState(fl, Closing)
			}
		}
		if int32(end-fl.cnxt) > 0 {
			fl.cnxt = end
		}
	}
	r.refresh(fl, now)
}

// serverSeen: a segment from our kernel of an established or closing flow.
func (r *Reference) serverSeen(fl *refFlow, ip []byte, now uint32) {
	tcp := ip[20:]
	flags := tcp[13]
	if flags&tcpRST != 0 {
		fl.flags |= fRST
		r.toClosing(fl, now)
		return
	}
	if fl.flags&fRST != 0 {
		// Our kernel did not take the client's reset: the flow lives on.
		fl.flags &^= fRST
		if fl.flags&(fCFIN|fSFIN) == 0 {
			r.setState(fl, Established)
		}
	}
	if flags&tcpACK != 0 && fl.flags&fCFIN != 0 && binary.BigEndian.Uint32(tcp[8:12]) == fl.cfin+1 {
		fl.flags |= fCFINAcked
	}
	if flags&tcpFIN != 0 && fl.flags&fSFINAcked == 0 {
		fl.sfin = binary.BigEndian.Uint32(tcp[4:8]) + tcpPayload(ip)
		fl.flags |= fSFIN
		if fl.state != Closing {
			r.setState(fl, Closing)
		}
	}
	r.refresh(fl, now)
}

// clientRST: a RST from the client of an established or closing flow,
// taken only within rstWindow below the client's next sequence number.
func (r *Reference) clientRST(fl *refFlow, ip []byte, now uint32) {
	if fl.cnxt-binary.BigEndian.Uint32(ip[24:28]) > rstWindow {
		r.ctr.RSTIgnored++
		return
	}
	fl.flags |= fRST
	r.toClosing(fl, now)
}

func (r *Reference) toClosing(fl *refFlow, now uint32) {
	r.setState(fl, Closing)
	fl.expire = now + uint32(r.cfg.Closing.Milliseconds())
}

func (r *Reference) syn(f []byte, k flowKey, bucket uint16, now uint32) Verdict {
	if !r.ports[k.dport] {
		r.ctr.SynPortDropped++
		return Drop
	}
	if fl := r.findLive(k, now); fl != nil {
		if fl.state != Withdrawn && !fl.finished() {
			if !r.csumOK(f[ethHLen:]) {
				return Drop
			}
			return r.toKernel(f)
		}
		r.delete(k, fl)
	}
	if !r.owned(bucket) {
		r.ctr.SynNotOurs++
		return Drop
	}
	if !r.csumOK(f[ethHLen:]) {
		return Drop
	}
	if uint32(len(r.flows)) >= r.cfg.MaxFlows {
		r.ctr.TableFullDropped++
		return Drop
	}
	if r.byState[SynRcvd]+r.byState[Withdrawn] >= r.cfg.MaxHalfOpen {
		r.ctr.HalfOpenDropped++
		return Drop
	}
	fl := r.insert(k, bucket, SynRcvd)
	fl.expire = now + uint32(r.cfg.HalfOpen.Milliseconds())
	fl.cnxt = binary.BigEndian.Uint32(f[ethHLen+20+4:]) + 1
	r.ctr.SynAccepted++
	return r.toKernel(f)
}

// ackToRST rewrites a TCP/IPv4 frame into a bare RST carrying the same
// sequence number and options; it returns the new frame length.
func ackToRST(f []byte) int {
	ip := f[ethHLen:]
	tcp := ip[20:]
	tcplen := int(tcp[12]>>4) * 4
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+tcplen))
	binary.BigEndian.PutUint32(tcp[8:12], 0)
	tcp[13] = tcpRST
	binary.BigEndian.PutUint16(tcp[14:16], 0)
	binary.BigEndian.PutUint16(tcp[18:20], 0)
	fixChecksums(ip, tcplen)
	return ethHLen + 20 + tcplen
}

// fixChecksums recomputes the IPv4 header checksum and the TCP checksum
// over the pseudo-header and tcplen bytes of TCP header (no payload).
func fixChecksums(ip []byte, tcplen int) {
	tcp := ip[20:]
	binary.BigEndian.PutUint16(ip[10:12], 0)
	binary.BigEndian.PutUint16(ip[10:12], checksum(0, ip[:20]))
	binary.BigEndian.PutUint16(tcp[16:18], 0)
	pseudo := append(append(make([]byte, 0, 12), ip[12:20]...), 0, 6, byte(tcplen>>8), byte(tcplen))
	binary.BigEndian.PutUint16(tcp[16:18], checksum(sum16(0, pseudo), tcp[:tcplen]))
}

func sum16(sum uint32, p []byte) uint32 {
	for len(p) > 1 {
		sum += uint32(p[0])<<8 | uint32(p[1])
		p = p[2:]
	}
	if len(p) == 1 {
		sum += uint32(p[0]) << 8
	}
	return sum
}

// checksum adds p to a partial sum and returns the folded complement.
func checksum(sum uint32, p []byte) uint16 {
	sum = sum16(sum, p)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func (r *Reference) ClassifyTap(frames [][]byte, now uint32) ([]Verdict, []int) {
	vs := make([]Verdict, len(frames))
	ls := make([]int, len(frames))
	for i, f := range frames {
		ls[i] = len(f)
		vs[i] = r.tapOne(f, now, &ls[i])
	}
	return vs, ls
}

func (r *Reference) tapOne(f []byte, now uint32, n *int) Verdict {
	r.ctr.FromKernel++
	if *n < ethHLen {
		return r.malformed()
	}
	et := binary.BigEndian.Uint16(f[12:14])
	if et == 0x0806 && *n >= ethHLen+28 && [4]byte(f[28:32]) == r.vip {
		r.ctr.KernelARPDropped++
		return Drop
	}
	ip := f[ethHLen:]
	if et == 0x0800 && *n >= ethHLen+40 && ip[0] == 0x45 && ip[9] == 6 && [4]byte(ip[12:16]) == r.vip && tcpFrameOK(ip, *n) {
		tcp := ip[20:]
		k := flowKey{[4]byte(ip[16:20]), [4]byte(ip[12:16]),
			binary.BigEndian.Uint16(tcp[2:4]), binary.BigEndian.Uint16(tcp[0:2])}
		if r.bucketRefs[uint16(r.hash(k))] != 0 {
			if fl := r.findLive(k, now); fl != nil {
				flags := tcp[13]
				switch fl.state {
				case Withdrawn:
					r.ctr.KernelWithdrawnDropped++
					if flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK {
						*n = r.synackToRST(f)
						r.ctr.ToKernel++
						return ToKernel
					}
					return Drop
				case SynRcvd:
					if flags&tcpRST != 0 {
						// Our kernel refused the connection.
						if flags&tcpACK != 0 && binary.BigEndian.Uint32(tcp[8:12]) == fl.cnxt {
							r.delete(k, fl)
						}
					} else if flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK {
						fl.isn = binary.BigEndian.Uint32(tcp[4:8])
						fl.isnKnown = true
					}
				default: // Established, Closing
					r.serverSeen(fl, ip, now)
				}
			}
		}
	}
	r.ctr.TX++
	return ToNIC
}

// tcpFrameOK: total length within the frame, TCP header within the
// packet, not a fragment (ip is an IPv4 header without options).
func tcpFrameOK(ip []byte, frameLen int) bool {
	totlen := int(binary.BigEndian.Uint16(ip[2:4]))
	doff := int(ip[20+12] >> 4)
	return totlen >= 40 && ethHLen+totlen <= frameLen &&
		binary.BigEndian.Uint16(ip[6:8])&0x3fff == 0 && doff >= 5 && 20+doff*4 <= totlen
}

// synackToRST rewrites our kernel's SYN-ACK into the client's RST for it
// (see classify.c); it returns the new length.
func (r *Reference) synackToRST(f []byte) int {
	ip := f[ethHLen:]
	tcp := ip[20:]
	var mac [6]byte
	copy(mac[:], f[0:6])
	copy(f[0:6], r.cfg.NodeMAC)
	copy(f[6:12], mac[:])
	var a [4]byte
	copy(a[:], ip[12:16])
	copy(ip[12:16], ip[16:20])
	copy(ip[16:20], a[:])
	var p [2]byte
	copy(p[:], tcp[0:2])
	copy(tcp[0:2], tcp[2:4])
	copy(tcp[2:4], p[:])
	copy(tcp[4:8], tcp[8:12])
	binary.BigEndian.PutUint32(tcp[8:12], 0)
	tcp[12] = 5 << 4
	tcp[13] = tcpRST
	binary.BigEndian.PutUint16(tcp[14:16], 0)
	binary.BigEndian.PutUint16(tcp[18:20], 0)
	binary.BigEndian.PutUint16(ip[2:4], 40)
	fixChecksums(ip, 20)
	return ethHLen + 40
}
