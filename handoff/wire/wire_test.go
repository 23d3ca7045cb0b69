package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testKey is the key of the golden frames: DeriveKey of the 32 bytes
// 0x00..0x1f.
func testKey(t testing.TB) Key {
	ck := make([]byte, 32)
	for i := range ck {
		ck[i] = byte(i)
	}
	k, err := DeriveKey(ck)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// goldenHandoff is the HANDOFF pinned in testdata and docs/protocol.md: a
// request peeked on n1 moving to n2, with a little reply already queued.
func goldenHandoff() *Handoff {
	return &Handoff{
		Client: netip.MustParseAddrPort("198.18.0.10:40000"),
		VIP:    netip.MustParseAddrPort("198.18.0.100:80"),
		Reason: ReasonGroup,
		Group:  "cgi",
		State: TCPState{
			SendSeq:   0x9a3c1f01, // above 2^31: sequence numbers are unsigned
			RecvSeq:   0x1234abcd,
			SendQueue: []byte("HTTP/1.1 100 Continue\r\n\r\n"),
			Unsent:    4,
			RecvQueue: []byte("GET /app.cgi HTTP/1.1\r\nHost: 198.18.0.100\r\n\r\n"),
			MSS:       1460, SACK: true, Timestamps: true, WindowScaling: true,
			SndWscale: 7, RcvWscale: 7,
			TSVal:  0x0051c0de,
			Window: Window{SndWl1: 0x1234abcd, SndWnd: 64256, MaxWindow: 64256, RcvWnd: 65483, RcvWup: 0x1234abcd},
		},
	}
}

var goldenHeader = Header{Seq: 1795779000000000000, Stamp: 1795779000000000000, Sender: "n1", Receiver: "n2", HandoffID: 42}

var goldens = []struct {
	file string
	body Body
}{
	{"handoff_v2.golden", goldenHandoff()},
	{"ready_v2.golden", &Ready{RestoreMicros: 150}},
	{"commit_v2.golden", &Commit{}},
	{"accept_v2.golden", &Accept{RestoreMicros: 180}},
	{"refuse_v2.golden", &Refuse{Cause: CauseRestore, Detail: "TCP_REPAIR_WINDOW: invalid argument"}},
}

// hexDump writes 16 bytes a line, "offset: hex", the form of the golden
// files and of docs/protocol.md.
func hexDump(b []byte) string {
	var sb strings.Builder
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		sb.WriteString(hex.EncodeToString([]byte{byte(off >> 8), byte(off)}) + ":")
		for i := 0; i < len(line); i += 2 {
			sb.WriteString(" " + hex.EncodeToString(line[i:min(i+2, len(line))]))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func parseDump(t *testing.T, s string) []byte {
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		_, hexes, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("golden line %q", line)
		}
		b, err := hex.DecodeString(strings.ReplaceAll(hexes, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestGolden(t *testing.T) {
	k := testKey(t)
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			frame, err := Seal(k, goldenHeader, g.body)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", g.file)
			if *update {
				if err := os.WriteFile(path, []byte(hexDump(frame)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := hexDump(frame); got != string(want) {
				t.Fatalf("encoding changed (a protocol change: bump Version):\n%s\nwant\n%s", got, want)
			}
			m, err := open(k, parseDump(t, string(want)))
			if err != nil {
				t.Fatal(err)
			}
			h := goldenHeader
			h.Type = g.body.messageType()
			if !reflect.DeepEqual(m, Message{Header: h, Body: g.body}) {
				t.Fatalf("golden decodes to %+v", m)
			}
		})
	}
}

// TestDeriveKeyGolden pins the key schedule: HKDF-SHA256 (RFC 5869) with no
// salt and the handoff label, computed here from crypto/hmac step by step.
func TestDeriveKeyGolden(t *testing.T) {
	k := testKey(t)
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i)
	}
	// RFC 5869: PRK = HMAC(salt = 32 zero bytes, IKM); T(1) = HMAC(PRK,
	// info || 0x01); 32 bytes need T(1) only.
	extract := hmac.New(sha256.New, make([]byte, 32))
	extract.Write(raw)
	expand := hmac.New(sha256.New, extract.Sum(nil))
	expand.Write([]byte("shoal handoff v1 hmac-sha256\x01"))
	if byHand := expand.Sum(nil); !bytes.Equal(k[:], byHand) {
		t.Fatalf("DeriveKey %x, HKDF by hand %x", k, byHand)
	}
	const pinned = "c79e31f46b8150be2ef8bdf4f92f95cd2632f9cf9c83ef5f03772ac19e9bc2d2" // also: openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:0001..1f -kdfopt "info:shoal handoff v1 hmac-sha256" HKDF
	if got := hex.EncodeToString(k[:]); got != pinned {
		t.Fatalf("handoff key of the test cluster key: %s, pinned %s (docs/protocol.md)", got, pinned)
	}
	if bytes.Equal(k[:], raw) {
		t.Fatal("the handoff key is the cluster key itself")
	}
	if _, err := DeriveKey(raw[:15]); err == nil {
		t.Fatal("a 15-byte cluster key was accepted")
	}
}

func roundTrip(t *testing.T, k Key, h Header, body Body) Message {
	t.Helper()
	frame, err := Seal(k, h, body)
	if err != nil {
		t.Fatal(err)
	}
	m, err := open(k, frame)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Seal(k, m.Header, m.Body)
	if err != nil || !bytes.Equal(again, frame) {
		t.Fatalf("re-encoding the decoded message differs: %v", err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	k := testKey(t)
	r := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	v6 := goldenHandoff()
	v6.Client = netip.MustParseAddrPort("[2001:db8::10]:40000")
	v6.VIP = netip.MustParseAddrPort("[2001:db8::100]:443")
	v6.Reason, v6.Group = ReasonSession, ""
	big := goldenHandoff()
	big.State.SendQueue, big.State.RecvQueue, big.State.Unsent = random(MaxQueue), random(MaxQueue), 1<<20
	big.State.SendSeq, big.State.RecvSeq = 0xffffffff, 0x80000000
	noOpts := goldenHandoff()
	noOpts.State.SACK, noOpts.State.Timestamps, noOpts.State.WindowScaling = false, false, false
	noOpts.State.SndWscale, noOpts.State.RcvWscale, noOpts.State.SendQueue, noOpts.State.RecvQueue, noOpts.State.Unsent = 0, 0, nil, nil, 0
	for _, body := range []Body{goldenHandoff(), v6, big, noOpts, &Ready{RestoreMicros: 1 << 31}, &Commit{}, &Accept{}, &Refuse{Cause: CauseAdopt}} {
		h := Header{Seq: r.Uint64(), Stamp: -int64(r.Uint32()), Sender: strings.Repeat("s", 255), Receiver: "r", HandoffID: r.Uint64()}
		m := roundTrip(t, k, h, body)
		if m.Seq != h.Seq || m.Stamp != h.Stamp || m.Sender != h.Sender || m.HandoffID != h.HandoffID || m.Type != body.messageType() {
			t.Fatalf("header %+v, sent %+v", m.Header, h)
		}
		if hb, ok := body.(*Handoff); ok {
			got := m.Body.(*Handoff)
			if got.Client != hb.Client || got.VIP != hb.VIP || !bytes.Equal(got.State.SendQueue, hb.State.SendQueue) ||
				!bytes.Equal(got.State.RecvQueue, hb.State.RecvQueue) || got.State.SendSeq != hb.State.SendSeq || got.State.Window != hb.State.Window {
				t.Fatal("handoff body differs after the round trip")
			}
		}
	}
}

func TestWrongKeyRefused(t *testing.T) {
	frame, err := Seal(testKey(t), goldenHeader, goldenHandoff())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := DeriveKey([]byte("another cluster's key, 32 bytes!"))
	if _, err := open(other, frame); !errors.Is(err, ErrAuth) {
		t.Fatalf("opened with another key: %v, want auth", err)
	}
}

// TestEveryAlterationRefused flips each byte of a frame in turn: none may
// be accepted.
func TestEveryAlterationRefused(t *testing.T) {
	k := testKey(t)
	frame, err := Seal(k, goldenHeader, goldenHandoff())
	if err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		f := bytes.Clone(frame)
		f[i] ^= 0x20
		if _, err := open(k, f); err == nil {
			t.Fatalf("byte %d altered and accepted", i)
		} else if i >= headerSize && !errors.Is(err, ErrAuth) {
			t.Fatalf("byte %d altered: %v, want auth", i, err)
		}
	}
}

func TestTruncatedAndOversizeRefused(t *testing.T) {
	k := testKey(t)
	frame, err := Seal(k, goldenHeader, goldenHandoff())
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(frame); n++ {
		if _, err := open(k, frame[:n]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("%d of %d bytes: %v, want truncated", n, len(frame), err)
		}
		if _, err := ReadFrame(bytes.NewReader(frame[:n])); err == nil {
			t.Fatalf("ReadFrame of %d of %d bytes succeeded", n, len(frame))
		}
	}
	if _, err := open(k, append(bytes.Clone(frame), 0)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("one byte more: %v, want truncated (length mismatch)", err)
	}
	// A length field beyond MaxFrame is refused from the fixed header,
	// before anything else is read.
	huge := bytes.Clone(frame[:headerSize])
	binary.BigEndian.PutUint32(huge[8:], MaxFrame)
	if _, err := ReadFrame(io.MultiReader(bytes.NewReader(huge), neverRead{t})); !errors.Is(err, ErrOversize) {
		t.Fatalf("length %d: %v, want oversize", MaxFrame, err)
	}
	for _, tc := range []struct {
		off  int
		val  byte
		want *Error
	}{{0, 'X', ErrMagic}, {4, 1, ErrVersion}, {4, 3, ErrVersion}} {
		f := bytes.Clone(frame)
		f[tc.off] = tc.val
		if _, err := ReadFrame(bytes.NewReader(f)); !errors.Is(err, tc.want) {
			t.Fatalf("byte %d = %d: %v, want %s", tc.off, tc.val, err, tc.want.Reason)
		}
	}
	// Two frames back to back on a stream.
	acc, _ := Seal(k, goldenHeader, &Accept{RestoreMicros: 1})
	r := bytes.NewReader(append(bytes.Clone(frame), acc...))
	for _, want := range [][]byte{frame, acc} {
		got, err := ReadFrame(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadFrame: %v", err)
		}
	}
	if _, err := ReadFrame(r); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

type neverRead struct{ t *testing.T }

func (n neverRead) Read([]byte) (int, error) {
	n.t.Fatal("ReadFrame read past a refused header")
	return 0, io.EOF
}

// reseal fixes the length and MAC of an altered frame (given with room for
// its MAC), as a node holding the key but running a broken encoder would
// send it.
func reseal(k Key, frame []byte) []byte {
	body := bytes.Clone(frame[:len(frame)-macSize])
	binary.BigEndian.PutUint32(body[8:], uint32(len(body)-headerSize))
	return appendMAC(k, body)
}

// TestMalformedNamesTheField: authentic frames with one bad field are
// refused with an error naming that field.
func TestMalformedNamesTheField(t *testing.T) {
	k := testKey(t)
	frame, err := Seal(k, goldenHeader, goldenHandoff())
	if err != nil {
		t.Fatal(err)
	}
	body := frame[:len(frame)-macSize]
	// Offsets in the golden HANDOFF: envelope senders "n1", "n2".
	envEnd := headerSize + 24 + 3 + 3
	famOff := envEnd
	reasonOff := famOff + 1 + 4 + 4 + 2 + 2
	groupOff := reasonOff + 1
	stateOff := groupOff + 1 + 3
	optsOff := stateOff + 4 + 4 + 2
	queuesOff := optsOff + 1 + 1 + 1 + 4 + 20
	set := func(off int, v ...byte) []byte {
		b := bytes.Clone(body)
		copy(b[off:], v)
		return reseal(k, append(b, make([]byte, macSize)...))
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  *Error
		field string
	}{
		{"unknown type", set(5, 9), ErrMalformed, "type 9"},
		{"reserved bits", set(6, 0, 1), ErrMalformed, "reserved"},
		{"empty sender", reseal(k, append(append(bytes.Clone(body[:36]), 0), append(bytes.Clone(body[39:]), make([]byte, macSize)...)...)), ErrMalformed, "sender"},
		{"family 5", set(famOff, 5), ErrMalformed, "handoff.family"},
		{"reason 0", set(reasonOff, 0), ErrMalformed, "handoff.reason"},
		{"unknown option bit", set(optsOff, 0x0f), ErrMalformed, "state.options"},
		{"window scale 15", set(optsOff+1, 15), ErrMalformed, "state.wscale"},
		{"zero MSS", set(optsOff-2, 0, 0), ErrMalformed, "state.mss"},
		{"unsent beyond the queue", set(queuesOff+4, u32(1000)...), ErrMalformed, "state.unsent"},
		{"send queue over MaxQueue", set(queuesOff, u32(MaxQueue+1)...), ErrOversize, "queues"},
		{"send queue longer than the frame", set(queuesOff, u32(5000)...), ErrTruncated, "state.send_queue"},
		{"trailing byte", reseal(k, append(bytes.Clone(body), append([]byte{0}, make([]byte, macSize)...)...)), ErrMalformed, "after the HANDOFF body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := open(k, tc.frame)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want %s naming %q", err, tc.want.Reason, tc.field)
			}
		})
	}
}

func TestSealRefusesWhatPeersWouldRefuse(t *testing.T) {
	k := testKey(t)
	for name, mod := range map[string]func(h *Header, m *Handoff){
		"queue over MaxQueue": func(_ *Header, m *Handoff) { m.State.RecvQueue = make([]byte, MaxQueue+1) },
		"unsent > queue":      func(_ *Header, m *Handoff) { m.State.Unsent = uint32(len(m.State.SendQueue) + 1) },
		"mixed families":      func(_ *Header, m *Handoff) { m.VIP = netip.MustParseAddrPort("[2001:db8::1]:80") },
		"no address":          func(_ *Header, m *Handoff) { m.Client = netip.AddrPort{} },
		"reason 9":            func(_ *Header, m *Handoff) { m.Reason = 9 },
		"group of 256":        func(_ *Header, m *Handoff) { m.Group = strings.Repeat("g", 256) },
		"no sender":           func(h *Header, _ *Handoff) { h.Sender = "" },
		"scale w/o option":    func(_ *Header, m *Handoff) { m.State.WindowScaling = false },
	} {
		h, m := goldenHeader, goldenHandoff()
		mod(&h, m)
		if _, err := Seal(k, h, m); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
}

func TestIPv4MappedTupleIsEncodedAsIPv4(t *testing.T) {
	m := goldenHandoff()
	m.Client = netip.AddrPortFrom(netip.AddrFrom16(m.Client.Addr().As16()), m.Client.Port())
	frame, err := Seal(testKey(t), goldenHeader, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := open(testKey(t), frame)
	if err != nil || got.Body.(*Handoff).Client != goldenHandoff().Client {
		t.Fatalf("got %v, %v", got.Body, err)
	}
}

// TestVersion1Refused: a frame of the first format (no READY/COMMIT
// exchange; testdata/handoff_v1.golden, authentic under the test key) is
// refused with ErrVersion from its fixed header, before its body is read.
func TestVersion1Refused(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "handoff_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := parseDump(t, string(b))
	if v1[4] != 1 {
		t.Fatalf("testdata/handoff_v1.golden has version %d", v1[4])
	}
	if _, err := ReadFrame(io.MultiReader(bytes.NewReader(v1[:headerSize]), neverRead{t})); !errors.Is(err, ErrVersion) {
		t.Fatalf("ReadFrame of a v1 frame: %v, want version", err)
	}
	if _, err := NewEndpoint(testKey(t), "n2", 0, nil).Open(v1); !errors.Is(err, ErrVersion) || ReasonOf(err) != "version" {
		t.Fatalf("Open of a v1 frame: %v, want version", err)
	}
}

// trickle is a peer that claims a frame of length claim and sends only
// send bytes of it, then stops (EOF).
func trickle(claim uint32, send int) io.Reader {
	h := make([]byte, headerSize)
	binary.BigEndian.PutUint32(h, Magic)
	h[4] = Version
	h[5] = byte(TypeHandoff)
	binary.BigEndian.PutUint32(h[8:], claim)
	return io.MultiReader(bytes.NewReader(h), io.LimitReader(zeros{}, int64(send)))
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// TestReadFrameAllocatesWhatArrives: a header claiming the largest frame,
// followed by 100 KiB and silence, makes ReadFrame allocate about what
// arrived plus a chunk, not the claimed 16 MiB (before the MAC can be
// checked, the length is only a claim). A whole large frame still reads.
func TestReadFrameAllocatesWhatArrives(t *testing.T) {
	claim := uint32(MaxFrame - headerSize - macSize)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 8
	for range n {
		if _, err := ReadFrame(trickle(claim, 100<<10)); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("ReadFrame: %v, want unexpected EOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	// 100 KiB arrived: a 64 KiB chunk, then one growth to 128 KiB (the
	// copy), so about 200 KiB; the claimed frame is 16.8 MB.
	if per > 512<<10 {
		t.Fatalf("ReadFrame allocated %d bytes per truncated frame that claimed %d and sent 100 KiB", per, claim)
	}
	t.Logf("%d bytes allocated per frame claiming %d bytes and sending 100 KiB", per, claim)
	got, err := ReadFrame(trickle(claim, int(claim)+macSize))
	if err != nil || len(got) != MaxFrame {
		t.Fatalf("a whole %d-byte frame: %d bytes, %v", MaxFrame, len(got), err)
	}
}
