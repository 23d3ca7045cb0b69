package wire

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Version is the format version this code writes and the only one it reads.
// Version 2 added READY and COMMIT (the two-phase exchange); version 1
// frames are refused with ErrVersion.
const Version uint8 = 2

// Magic starts every frame: "SHHO", shoal handoff.
const Magic uint32 = 0x5348484f

// Limits.
const (
	// MaxQueue bounds each queue of a HANDOFF. Linux's default maximum
	// socket buffers are 4 MiB (send) and 6 MiB (receive); a connection
	// with more queued is relayed instead.
	MaxQueue = 8 << 20
	// MaxFrame bounds a whole frame.
	MaxFrame = headerSize + maxEnvelope + maxHandoffFixed + 2*MaxQueue + macSize

	headerSize      = 12
	macSize         = sha256.Size
	maxEnvelope     = 8 + 8 + 8 + 2*(1+255)
	maxHandoffFixed = 1 + 2*16 + 2*2 + 1 + 1 + 255 + 4 + 4 + 2 + 1 + 1 + 1 + 4 + 20 + 4 + 4 + 4
)

// Type is a message type.
type Type uint8

// Message types.
const (
	TypeHandoff Type = 1
	TypeAccept  Type = 2
	TypeRefuse  Type = 3
	TypeReady   Type = 4
	TypeCommit  Type = 5
)

func (t Type) String() string {
	switch t {
	case TypeHandoff:
		return "HANDOFF"
	case TypeAccept:
		return "ACCEPT"
	case TypeRefuse:
		return "REFUSE"
	case TypeReady:
		return "READY"
	case TypeCommit:
		return "COMMIT"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Header is what every frame carries besides its body.
type Header struct {
	Type Type
	// Seq never repeats for one sender (see Endpoint).
	Seq uint64
	// Stamp is the sender's clock when sealing, Unix nanoseconds.
	Stamp int64
	// Sender and Receiver are node IDs, 1..255 bytes each.
	Sender, Receiver string
	// HandoffID pairs a READY, COMMIT, ACCEPT or REFUSE with its
	// HANDOFF; the origin chooses it.
	HandoffID uint64
}

// Body is one of *Handoff, *Ready, *Commit, *Accept, *Refuse.
type Body interface{ messageType() Type }

// Reason says why a connection moves.
type Reason uint8

// Reasons.
const (
	ReasonGroup   Reason = 1 // the request's content lives in another group
	ReasonSession Reason = 2 // a persistent session belongs to another node
	ReasonVersion Reason = 3 // another node holds a newer version of the content
)

func (r Reason) String() string {
	switch r {
	case ReasonGroup:
		return "group"
	case ReasonSession:
		return "session"
	case ReasonVersion:
		return "version"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Handoff asks the receiver to take over a connection.
type Handoff struct {
	// Client is the remote end; VIP the local one. Same family.
	Client, VIP netip.AddrPort
	Reason      Reason
	// Group is the group the request matched, "" when none (0..255 bytes).
	Group string
	State TCPState
}

// TCPState is a frozen TCP connection, as TCP_REPAIR dumps and restores it.
type TCPState struct {
	// SendSeq is the sequence number of SendQueue[0], the oldest byte the
	// peer has not acknowledged (snd_una).
	SendSeq uint32
	// RecvSeq is the sequence number of RecvQueue[0], the first byte the
	// application has not read (rcv_nxt minus the queue's length).
	RecvSeq uint32
	// SendQueue holds the bytes written and not acknowledged; its last
	// Unsent bytes were never transmitted.
	SendQueue []byte
	Unsent    uint32
	// RecvQueue holds the bytes received and not read (a peeked request
	// is here).
	RecvQueue []byte
	// MSS is the maximum segment size clamp (TCP_MAXSEG under repair).
	MSS uint16
	// Options negotiated in the handshake.
	SACK, Timestamps, WindowScaling bool
	// SndWscale and RcvWscale are the window scale shifts (0..14), used
	// when WindowScaling.
	SndWscale, RcvWscale uint8
	// TSVal is TCP_TIMESTAMP at the freeze: the timestamp clock the peer
	// sees (local clock plus the connection's offset; on kernels with
	// microsecond timestamps its low bit flags them). Restoring it on
	// another node sets that node's offset so the peer's view continues.
	TSVal uint32
	// Window is TCP_REPAIR_WINDOW.
	Window Window
}

// Window is struct tcp_repair_window.
type Window struct {
	SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32
}

// Ready says the receiver restored the connection and its data plane
// delivers the flow to it, while the socket stays silent (repair mode,
// behind a drop-all filter) until a COMMIT. Until the origin sends COMMIT
// the receiver can still abort without a trace.
type Ready struct {
	// RestoreMicros is how long restore and adoption took on the
	// receiver.
	RestoreMicros uint32
}

// Commit tells the receiver of a READY to release the connection: from
// the first byte of a COMMIT on, the origin never thaws it.
type Commit struct{}

// Accept says the receiver released the connection and owns it.
type Accept struct {
	// RestoreMicros is the time from the HANDOFF's receipt to the
	// release on the receiver.
	RestoreMicros uint32
}

// Cause says why a HANDOFF was refused.
type Cause uint8

// Causes.
const (
	CauseRestore   Cause = 1 // the kernel refused the restore
	CauseBusy      Cause = 2 // the receiver has no capacity for it
	CauseNotMember Cause = 3 // the receiver does not serve that group or VIP
	CauseDraining  Cause = 4 // the receiver is leaving
	CauseAdopt     Cause = 5 // the receiver's data plane could not adopt the flow
)

func (c Cause) String() string {
	switch c {
	case CauseRestore:
		return "restore"
	case CauseBusy:
		return "busy"
	case CauseNotMember:
		return "not_member"
	case CauseDraining:
		return "draining"
	case CauseAdopt:
		return "adopt"
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// Refuse says the receiver did not take the connection; the origin keeps
// it (and relays).
type Refuse struct {
	Cause Cause
	// Detail is for logs, 0..255 bytes.
	Detail string
}

func (*Handoff) messageType() Type { return TypeHandoff }
func (*Ready) messageType() Type   { return TypeReady }
func (*Commit) messageType() Type  { return TypeCommit }
func (*Accept) messageType() Type  { return TypeAccept }
func (*Refuse) messageType() Type  { return TypeRefuse }

// Message is a decoded frame: the header and exactly one body.
type Message struct {
	Header
	Body Body
}

// Key is the handoff authentication key.
type Key [32]byte

// keyLabel separates the handoff key from every other use of the cluster key.
const keyLabel = "shoal handoff v1 hmac-sha256"

// DeriveKey derives the handoff key from the cluster key (gossip.key):
// HKDF-SHA256 with no salt and info "shoal handoff v1 hmac-sha256".
func DeriveKey(clusterKey []byte) (Key, error) {
	var k Key
	if len(clusterKey) < 16 {
		return k, fmt.Errorf("wire: cluster key of %d bytes; want at least 16", len(clusterKey))
	}
	b, err := hkdf.Key(sha256.New, clusterKey, nil, keyLabel, len(k))
	if err != nil {
		return k, fmt.Errorf("wire: hkdf: %w", err)
	}
	copy(k[:], b)
	return k, nil
}

// Error is the error for a frame that is refused.
type Error struct {
	// Reason is one of the Err* labels, for counters.
	Reason string
	// Detail names the field and the problem.
	Detail string
}

func (e *Error) Error() string { return "handoff wire: " + e.Reason + ": " + e.Detail }

// Is matches any *Error with the same Reason, so errors.Is(err, ErrAuth)
// works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason && t.Detail == ""
}

// Refusal labels (Error.Reason), for counters.
var (
	ErrMagic     = &Error{Reason: "magic"}     // not a handoff frame
	ErrVersion   = &Error{Reason: "version"}   // a version this code does not read
	ErrOversize  = &Error{Reason: "oversize"}  // a length beyond the bounds
	ErrTruncated = &Error{Reason: "truncated"} // the frame ends inside a field
	ErrMalformed = &Error{Reason: "malformed"} // a field out of range, trailing bytes
	ErrAuth      = &Error{Reason: "auth"}      // the MAC does not verify (wrong key or tampered)
	ErrReplay    = &Error{Reason: "replay"}    // a sequence number seen before, or too old
	ErrStale     = &Error{Reason: "stale"}     // stamped outside the window, or before the receiver started
	ErrAddressee = &Error{Reason: "addressee"} // addressed to another node
)

// Reasons lists every Error.Reason, to pre-register counters.
var Reasons = []string{"magic", "version", "oversize", "truncated", "malformed", "auth", "replay", "stale", "addressee"}

func fail(kind *Error, format string, a ...any) *Error {
	return &Error{Reason: kind.Reason, Detail: fmt.Sprintf(format, a...)}
}

// ReasonOf returns the counter label of an error from this package.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "io"
}

// ReadFrame reads one whole frame from a stream. It reads the fixed header
// first and refuses a bad magic, version or length before reading on.
func ReadFrame(r io.Reader) ([]byte, error) { return ReadFrameWith(r, nil) }

// readChunk is the first allocation for a frame's body, and the most a
// frame's buffer grows by at a time.
const (
	readChunk    = 64 << 10
	maxReadChunk = 1 << 20
)

// ReadFrameWith is ReadFrame calling onHeader (if not nil) with the length
// of the rest of the frame once the fixed header is accepted, before the
// body is read: where a server moves its read deadline from the header's
// to the body's. The length field is not trusted for memory: the buffer
// starts at one chunk and grows only as bytes arrive (never beyond what
// has arrived plus a chunk of at most 1 MiB), so a peer that claims 16 MiB
// and sends little costs little; the MAC is checked afterwards, by Open.
func ReadFrameWith(r io.Reader, onHeader func(rest int)) ([]byte, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n, err := checkFixed(h[:])
	if err != nil {
		return nil, err
	}
	total := headerSize + n + macSize
	if onHeader != nil {
		onHeader(total - headerSize)
	}
	frame := make([]byte, headerSize, min(total, headerSize+readChunk))
	copy(frame, h[:])
	for len(frame) < total {
		if len(frame) == cap(frame) {
			grow := min(max(len(frame), readChunk), maxReadChunk)
			next := make([]byte, len(frame), min(total, len(frame)+grow))
			copy(next, frame)
			frame = next
		}
		k, err := r.Read(frame[len(frame):cap(frame)])
		frame = frame[:len(frame)+k]
		if err != nil && len(frame) < total {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return frame, nil
}

// checkFixed checks the fixed header and returns the length field.
func checkFixed(h []byte) (int, error) {
	if m := binary.BigEndian.Uint32(h); m != Magic {
		return 0, fail(ErrMagic, "magic 0x%08x, want 0x%08x (\"SHHO\")", m, Magic)
	}
	if h[4] != Version {
		return 0, fail(ErrVersion, "version %d; this node reads version %d", h[4], Version)
	}
	n := int(binary.BigEndian.Uint32(h[8:]))
	if n > MaxFrame-headerSize-macSize {
		return 0, fail(ErrOversize, "length %d exceeds %d", n, MaxFrame-headerSize-macSize)
	}
	return n, nil
}

// Seal encodes and authenticates one frame. Layout, version 2 (all integers
// big-endian):
//
//	fixed header
//	  0   4  magic "SHHO" (0x5348484f)
//	  4   1  version = 2
//	  5   1  type: 1 HANDOFF, 2 ACCEPT, 3 REFUSE, 4 READY, 5 COMMIT
//	  6   2  reserved, 0
//	  8   4  length L of envelope + body
//	envelope
//	 12   8  sequence number
//	 20   8  stamp, Unix nanoseconds (signed)
//	 28   8  handoff ID
//	 36 1+n  sender node ID (n = 1..255)
//	 .. 1+n  receiver node ID (n = 1..255)
//	body (by type; see encodeHandoff, ACCEPT and REFUSE below)
//	trailer
//	 12+L 32 HMAC-SHA256(key, bytes 0 .. 12+L)
//
// READY's body is the 4-byte restore-and-adopt time in microseconds;
// COMMIT's is empty; ACCEPT's is the 4-byte time from the HANDOFF's
// receipt to the release in microseconds; REFUSE's is a 1-byte cause and
// a detail string (1-byte length, then bytes).
func Seal(k Key, h Header, body Body) ([]byte, error) {
	if body == nil {
		return nil, fail(ErrMalformed, "no body")
	}
	h.Type = body.messageType()
	b := make([]byte, headerSize, 128)
	binary.BigEndian.PutUint32(b, Magic)
	b[4] = Version
	b[5] = byte(h.Type)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Stamp))
	b = binary.BigEndian.AppendUint64(b, h.HandoffID)
	var err error
	if b, err = appendString(b, "sender", h.Sender, 1); err != nil {
		return nil, err
	}
	if b, err = appendString(b, "receiver", h.Receiver, 1); err != nil {
		return nil, err
	}
	switch m := body.(type) {
	case *Handoff:
		if b, err = encodeHandoff(b, m); err != nil {
			return nil, err
		}
	case *Ready:
		b = binary.BigEndian.AppendUint32(b, m.RestoreMicros)
	case *Commit:
	case *Accept:
		b = binary.BigEndian.AppendUint32(b, m.RestoreMicros)
	case *Refuse:
		if m.Cause < CauseRestore || m.Cause > CauseAdopt {
			return nil, fail(ErrMalformed, "refuse.cause %d unknown", m.Cause)
		}
		b = append(b, byte(m.Cause))
		if b, err = appendString(b, "refuse.detail", m.Detail, 0); err != nil {
			return nil, err
		}
	}
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-headerSize))
	return appendMAC(k, b), nil
}

// appendMAC appends HMAC-SHA256(k, b) to b.
func appendMAC(k Key, b []byte) []byte {
	mac := hmac.New(sha256.New, k[:])
	mac.Write(b)
	return mac.Sum(b)
}

func appendString(b []byte, field, s string, minLen int) ([]byte, error) {
	if len(s) < minLen || len(s) > 255 {
		return nil, fail(ErrMalformed, "%s: %d bytes, want %d..255", field, len(s), minLen)
	}
	return append(append(b, byte(len(s))), s...), nil
}

// HANDOFF body, following the envelope:
//
//	 1    family: 4 or 6
//	 4|16 client address
//	 4|16 VIP address
//	 2    client port
//	 2    VIP port
//	 1    reason: 1 group, 2 session, 3 version
//	 1+n  group (n = 0..255)
//	 4    send seq (of the send queue's first byte)
//	 4    recv seq (of the receive queue's first byte)
//	 2    MSS
//	 1    options: bit 0 SACK, bit 1 timestamps, bit 2 window scaling; others 0
//	 1    send window scale (0..14)
//	 1    receive window scale (0..14)
//	 4    timestamp clock (TCP_TIMESTAMP)
//	20    window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup
//	 4    send queue length S (0..MaxQueue)
//	 4    unsent bytes at its end U (0..S)
//	 4    receive queue length R (0..MaxQueue)
//	 S    send queue
//	 R    receive queue
const (
	optSACK       = 1 << 0
	optTimestamps = 1 << 1
	optWscale     = 1 << 2
	maxWscale     = 14 // RFC 7323 §2.3
)

func encodeHandoff(b []byte, m *Handoff) ([]byte, error) {
	c, v := m.Client.Addr().Unmap(), m.VIP.Addr().Unmap()
	switch {
	case !c.IsValid() || !v.IsValid():
		return nil, fail(ErrMalformed, "handoff.tuple: client %v, vip %v: both addresses needed", m.Client, m.VIP)
	case c.Is4() != v.Is4():
		return nil, fail(ErrMalformed, "handoff.tuple: client %v and vip %v differ in family", c, v)
	case c.Is4():
		b = append(b, 4)
	default:
		b = append(b, 6)
	}
	b = append(b, c.AsSlice()...)
	b = append(b, v.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, m.Client.Port())
	b = binary.BigEndian.AppendUint16(b, m.VIP.Port())
	if m.Reason < ReasonGroup || m.Reason > ReasonVersion {
		return nil, fail(ErrMalformed, "handoff.reason %d unknown", m.Reason)
	}
	b = append(b, byte(m.Reason))
	var err error
	if b, err = appendString(b, "handoff.group", m.Group, 0); err != nil {
		return nil, err
	}
	s := &m.State
	if err := s.check(); err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint32(b, s.SendSeq)
	b = binary.BigEndian.AppendUint32(b, s.RecvSeq)
	b = binary.BigEndian.AppendUint16(b, s.MSS)
	var opts byte
	if s.SACK {
		opts |= optSACK
	}
	if s.Timestamps {
		opts |= optTimestamps
	}
	if s.WindowScaling {
		opts |= optWscale
	}
	b = append(b, opts, s.SndWscale, s.RcvWscale)
	b = binary.BigEndian.AppendUint32(b, s.TSVal)
	for _, w := range []uint32{s.Window.SndWl1, s.Window.SndWnd, s.Window.MaxWindow, s.Window.RcvWnd, s.Window.RcvWup} {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.SendQueue)))
	b = binary.BigEndian.AppendUint32(b, s.Unsent)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.RecvQueue)))
	b = append(b, s.SendQueue...)
	return append(b, s.RecvQueue...), nil
}

// check applies the decoder's range checks before encoding, so a node never
// sends what its peers refuse.
func (s *TCPState) check() error {
	switch {
	case len(s.SendQueue) > MaxQueue:
		return fail(ErrOversize, "state.send_queue: %d bytes, at most %d", len(s.SendQueue), MaxQueue)
	case len(s.RecvQueue) > MaxQueue:
		return fail(ErrOversize, "state.recv_queue: %d bytes, at most %d", len(s.RecvQueue), MaxQueue)
	case int64(s.Unsent) > int64(len(s.SendQueue)):
		return fail(ErrMalformed, "state.unsent: %d of a %d-byte send queue", s.Unsent, len(s.SendQueue))
	case s.MSS == 0:
		return fail(ErrMalformed, "state.mss: 0")
	case s.SndWscale > maxWscale || s.RcvWscale > maxWscale:
		return fail(ErrMalformed, "state.wscale: send %d, receive %d; at most %d", s.SndWscale, s.RcvWscale, maxWscale)
	case !s.WindowScaling && (s.SndWscale != 0 || s.RcvWscale != 0):
		return fail(ErrMalformed, "state.wscale: shifts %d/%d without window scaling", s.SndWscale, s.RcvWscale)
	}
	return nil
}

// open verifies and decodes a frame, without the replay and addressee
// checks (Endpoint.Open adds them).
func open(k Key, frame []byte) (Message, error) {
	if len(frame) < headerSize {
		return Message{}, fail(ErrTruncated, "frame of %d bytes, shorter than the %d-byte header", len(frame), headerSize)
	}
	n, err := checkFixed(frame)
	if err != nil {
		return Message{}, err
	}
	if len(frame) != headerSize+n+macSize {
		return Message{}, fail(ErrTruncated, "frame of %d bytes, its header says %d", len(frame), headerSize+n+macSize)
	}
	mac := hmac.New(sha256.New, k[:])
	mac.Write(frame[:headerSize+n])
	if !hmac.Equal(mac.Sum(nil), frame[headerSize+n:]) {
		return Message{}, fail(ErrAuth, "MAC does not verify: wrong cluster key or altered frame")
	}
	// Authentic from here on; a malformed frame is a bug on a node that
	// holds the key, and is refused just the same.
	d := decoder{b: frame[:headerSize+n], off: 5}
	var m Message
	m.Type = Type(d.u8("type"))
	if r := d.u16("reserved"); r != 0 && d.err == nil {
		d.fail(ErrMalformed, "reserved: 0x%04x, want 0", r)
	}
	d.u32("length")
	m.Seq = d.u64("seq")
	m.Stamp = int64(d.u64("stamp"))
	m.HandoffID = d.u64("handoff_id")
	m.Sender = d.str("sender", 1)
	m.Receiver = d.str("receiver", 1)
	switch m.Type {
	case TypeHandoff:
		m.Body = d.handoff()
	case TypeReady:
		m.Body = &Ready{RestoreMicros: d.u32("ready.restore_micros")}
	case TypeCommit:
		m.Body = &Commit{}
	case TypeAccept:
		m.Body = &Accept{RestoreMicros: d.u32("accept.restore_micros")}
	case TypeRefuse:
		r := &Refuse{Cause: Cause(d.u8("refuse.cause"))}
		if (r.Cause < CauseRestore || r.Cause > CauseAdopt) && d.err == nil {
			d.fail(ErrMalformed, "refuse.cause %d unknown", r.Cause)
		}
		r.Detail = d.str("refuse.detail", 0)
		m.Body = r
	default:
		if d.err == nil {
			d.fail(ErrMalformed, "type %d unknown", m.Type)
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail(ErrMalformed, "%d bytes after the %s body", len(d.b)-d.off, m.Type)
	}
	if d.err != nil {
		return Message{}, d.err
	}
	return m, nil
}

func (d *decoder) handoff() *Handoff {
	m := &Handoff{}
	var alen int
	switch fam := d.u8("handoff.family"); fam {
	case 4:
		alen = 4
	case 6:
		alen = 16
	default:
		if d.err == nil {
			d.fail(ErrMalformed, "handoff.family %d, want 4 or 6", fam)
		}
		return m
	}
	ca, _ := netip.AddrFromSlice(d.bytes("handoff.client_addr", alen))
	va, _ := netip.AddrFromSlice(d.bytes("handoff.vip_addr", alen))
	cp, vp := d.u16("handoff.client_port"), d.u16("handoff.vip_port")
	if d.err != nil {
		return m
	}
	if alen == 16 && (ca.Is4In6() || va.Is4In6()) {
		d.fail(ErrMalformed, "handoff.tuple: IPv4-mapped address in family 6")
		return m
	}
	m.Client, m.VIP = netip.AddrPortFrom(ca, cp), netip.AddrPortFrom(va, vp)
	m.Reason = Reason(d.u8("handoff.reason"))
	if (m.Reason < ReasonGroup || m.Reason > ReasonVersion) && d.err == nil {
		d.fail(ErrMalformed, "handoff.reason %d unknown", m.Reason)
	}
	m.Group = d.str("handoff.group", 0)
	s := &m.State
	s.SendSeq = d.u32("state.send_seq")
	s.RecvSeq = d.u32("state.recv_seq")
	s.MSS = d.u16("state.mss")
	opts := d.u8("state.options")
	if opts&^(optSACK|optTimestamps|optWscale) != 0 && d.err == nil {
		d.fail(ErrMalformed, "state.options 0x%02x has unknown bits", opts)
	}
	s.SACK, s.Timestamps, s.WindowScaling = opts&optSACK != 0, opts&optTimestamps != 0, opts&optWscale != 0
	s.SndWscale = d.u8("state.snd_wscale")
	s.RcvWscale = d.u8("state.rcv_wscale")
	s.TSVal = d.u32("state.tsval")
	s.Window.SndWl1 = d.u32("state.window.snd_wl1")
	s.Window.SndWnd = d.u32("state.window.snd_wnd")
	s.Window.MaxWindow = d.u32("state.window.max_window")
	s.Window.RcvWnd = d.u32("state.window.rcv_wnd")
	s.Window.RcvWup = d.u32("state.window.rcv_wup")
	sl := d.u32("state.send_queue_len")
	s.Unsent = d.u32("state.unsent")
	rl := d.u32("state.recv_queue_len")
	if d.err != nil {
		return m
	}
	if sl > MaxQueue || rl > MaxQueue {
		d.fail(ErrOversize, "state queues of %d and %d bytes; at most %d each", sl, rl, MaxQueue)
		return m
	}
	s.SendQueue = d.bytes("state.send_queue", int(sl))
	s.RecvQueue = d.bytes("state.recv_queue", int(rl))
	if d.err == nil {
		if err := s.check(); err != nil {
			d.err = err.(*Error)
		}
	}
	return m
}

// decoder reads named big-endian fields; the first failure sticks and names
// its field and offset.
type decoder struct {
	b   []byte
	off int
	err *Error
}

func (d *decoder) fail(kind *Error, format string, a ...any) {
	d.err = fail(kind, format, a...)
}

func (d *decoder) bytes(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail(ErrTruncated, "%s: needs %d bytes at offset %d, %d left", field, n, d.off, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8(field string) uint8 {
	if v := d.bytes(field, 1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if v := d.bytes(field, 2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if v := d.bytes(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if v := d.bytes(field, 8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str(field string, minLen int) string {
	n := int(d.u8(field + "_len"))
	v := d.bytes(field, n)
	if d.err == nil && n < minLen {
		d.fail(ErrMalformed, "%s: empty", field)
	}
	return string(v)
}
