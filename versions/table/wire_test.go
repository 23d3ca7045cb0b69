package table

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares b with testdata/name (hex, 32 bytes a line).
func golden(t *testing.T, name string, b []byte) {
	t.Helper()
	var sb strings.Builder
	for i := 0; i < len(b); i += 32 {
		sb.WriteString(hex.EncodeToString(b[i:min(i+32, len(b))]) + "\n")
	}
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if sb.String() != string(want) {
		t.Fatalf("%s changed: the wire format is frozen (version %d).\ngot:\n%swant:\n%s", name, WireVersion, sb.String(), want)
	}
}

func sampleSnapshot() Snapshot {
	return Snapshot{
		Pubs: map[string]Publication{"/page.html": pub("/page.html", 2, "v2")},
		Rows: map[string]map[string]Row{
			"/page.html": {
				"n1": {Path: "/page.html", Node: "n1", Version: 2, SHA256: sum("v2"), State: Available, Holds: true, Gen: 3},
				"n2": {Path: "/page.html", Node: "n2", Version: 1, SHA256: sum("v1"), State: Updating, Gen: 7},
			},
			"/old.css": {"n2": {Path: "/old.css", Node: "n2", State: Unavailable, Gen: 1}},
		},
	}
}

func TestGolden(t *testing.T) {
	p := pub("/page.html", 2, "v2")
	golden(t, "delta_pub_v1.golden", EncodePub(p))
	r := sampleSnapshot().Rows["/page.html"]["n2"]
	golden(t, "delta_row_v1.golden", EncodeRow(r))
	st, err := EncodeState(sampleSnapshot())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "state_v1.golden", st)

	pubs, rows, err := DecodeDelta(EncodePub(p))
	if err != nil || len(rows) != 0 || len(pubs) != 1 || pubs[0] != p {
		t.Fatalf("pub round trip: %+v %+v %v", pubs, rows, err)
	}
	pubs, rows, err = DecodeDelta(EncodeRow(r))
	if err != nil || len(pubs) != 0 || len(rows) != 1 || rows[0] != r {
		t.Fatalf("row round trip: %+v %+v %v", pubs, rows, err)
	}
	s, err := DecodeState(st)
	if err != nil || !reflect.DeepEqual(s, sampleSnapshot()) {
		t.Fatalf("state round trip: %+v, %v", s, err)
	}
}

// TestDeltaBound: the largest valid publication and row fit MaxDeltaSize,
// which fits one encrypted memberlist broadcast.
func TestDeltaBound(t *testing.T) {
	long := "/" + strings.Repeat("x", MaxPathLen-1)
	id := strings.Repeat("n", MaxNodeLen)
	p := Publication{Path: long, Version: ^uint64(0), SHA256: sum("x"), Size: 1 << 40, Group: strings.Repeat("g", MaxGroupLen),
		Threshold: 95, Batch: MaxBatch, Publisher: id, Stamp: -1}
	r := Row{Path: long, Node: id, Version: ^uint64(0), SHA256: sum("x"), State: Available, Holds: true, Gen: ^uint64(0)}
	for _, b := range [][]byte{EncodePub(p), EncodeRow(r)} {
		t.Logf("largest delta: %d bytes (bound %d)", len(b), MaxDeltaSize)
		if len(b) > MaxDeltaSize {
			t.Fatalf("%d-byte delta exceeds MaxDeltaSize %d", len(b), MaxDeltaSize)
		}
		if _, _, err := DecodeDelta(b); err != nil {
			t.Fatal(err)
		}
	}
	// memberlist: 1400-byte UDP buffer, minus compound header, label and
	// AES-GCM overhead (≈ 30 bytes), minus 1 byte of user-message header.
	if MaxDeltaSize > 1400-2-30-1 {
		t.Fatalf("MaxDeltaSize %d does not fit an encrypted memberlist packet", MaxDeltaSize)
	}
}

// TestDecodeErrors: each bad message is refused with its reason and the
// field it names.
func TestDecodeErrors(t *testing.T) {
	good := EncodeRow(sampleSnapshot().Rows["/page.html"]["n2"])
	st, _ := EncodeState(sampleSnapshot())
	mod := func(b []byte, i int, v byte) []byte { c := bytes.Clone(b); c[i] = v; return c }
	stateOf := func(body ...byte) []byte { return append([]byte{'V', 'T', 1, 3}, body...) }
	entry := func(path string) []byte { // one path's entry of a full state
		r := Row{Path: path, Node: "n1", State: Unavailable, Gen: 1}
		return mustState(t, Snapshot{Rows: map[string]map[string]Row{path: {"n1": r}}})[8:]
	}
	unsorted := append(append(stateOf(0, 0, 0, 2), entry("/b")...), entry("/a")...)
	for _, c := range []struct {
		name   string
		b      []byte
		state  bool
		reason string
		field  string
	}{
		{"empty", nil, false, ReasonTruncated, "header"},
		{"magic", mod(good, 0, 'X'), false, ReasonMagic, "header"},
		{"version", mod(good, 2, 2), false, ReasonVersion, "header"},
		{"kind", mod(good, 3, 9), false, ReasonKind, "header"},
		{"state as delta", st, false, ReasonKind, "header"},
		{"truncated gen", good[:len(good)-1], false, ReasonTruncated, "row.gen"},
		{"trailing", append(bytes.Clone(good), 0), false, ReasonTrailing, "message"},
		{"oversize", append(bytes.Clone(good), make([]byte, MaxDeltaSize)...), false, ReasonOversize, "message"},
		{"long path", append([]byte{'V', 'T', 1, 2, 0x04, 0x01}, make([]byte, 1025)...), false, ReasonOversize, "row.path"},
		{"bad state", mod(good, len(good)-10, 7), false, ReasonInvalid, ""},
		{"holds 2", mod(good, len(good)-9, 2), false, ReasonInvalid, "row.holds"},
		{"delta as state", good, true, ReasonKind, "header"},
		{"huge count", stateOf(0xff, 0xff, 0xff, 0xff), true, ReasonTruncated, "state.paths"},
		{"unsorted", unsorted, true, ReasonInvalid, "state.path"},
		{"empty entry", stateOf(0, 0, 0, 1, 0, 2, '/', 'b', 0, 0, 0), true, ReasonInvalid, "state.rows"},
		{"flags", stateOf(0, 0, 0, 1, 0, 2, '/', 'b', 4, 0, 0), true, ReasonInvalid, "state.flags"},
		{"state trailing", append(bytes.Clone(st), 1), true, ReasonTrailing, "message"},
	} {
		var err error
		if c.state {
			_, err = DecodeState(c.b)
		} else {
			_, _, err = DecodeDelta(c.b)
		}
		we, ok := err.(*WireError)
		if !ok || we.Reason != c.reason || we.Field != c.field {
			t.Errorf("%s: err %v, want reason %q field %q", c.name, err, c.reason, c.field)
		}
	}
}

// TestBadInputChangesNothing: bad remote messages are counted by reason
// and leave the table as it was.
func TestBadInputChangesNothing(t *testing.T) {
	tb := newTable(t, "n1")
	if err := tb.MergeState(mustState(t, sampleSnapshot())); err != nil {
		t.Fatal(err)
	}
	before := mustState(t, tb.Snapshot())
	r := sampleSnapshot().Rows["/page.html"]["n2"]
	r.Gen, r.State = 100, 0 // would win on gen, but is invalid
	bad := appendRow([]byte{'V', 'T', 1, 2}, r)
	st := mustState(t, sampleSnapshot())
	tb.MergeDelta(bad)
	tb.MergeDelta([]byte("hello"))
	tb.MergeState(append(st, 0))
	tb.MergeState(st[:len(st)-3])
	if after := mustState(t, tb.Snapshot()); !bytes.Equal(before, after) {
		t.Fatal("bad input changed the table")
	}
	got := tb.Stats().Rejected
	want := map[string]uint64{ReasonInvalid: 1, ReasonMagic: 1, ReasonTrailing: 1, ReasonTruncated: 1}
	for _, reason := range Reasons {
		if got[reason] != want[reason] {
			t.Errorf("rejected %v, want %v", got, want)
			break
		}
	}
}

func mustState(t testing.TB, s Snapshot) []byte {
	t.Helper()
	b, err := EncodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecode: the decoders never panic, refuse with a known reason, and
// what they accept re-encodes to the same bytes (one encoding per value).
func FuzzDecode(f *testing.F) {
	f.Add(EncodePub(pub("/page.html", 2, "v2")))
	f.Add(EncodeRow(sampleSnapshot().Rows["/page.html"]["n1"]))
	st, _ := EncodeState(sampleSnapshot())
	f.Add(st)
	f.Add([]byte{'V', 'T', 1, 3, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pubs, rows, err := DecodeDelta(b)
		if err != nil {
			if !knownReason(err) {
				t.Fatalf("delta: unknown refusal %v", err)
			}
		} else {
			var re []byte
			if len(pubs) == 1 {
				re = EncodePub(pubs[0])
			} else {
				re = EncodeRow(rows[0])
			}
			if !bytes.Equal(re, b) {
				t.Fatalf("delta %x re-encodes to %x", b, re)
			}
		}
		s, err := DecodeState(b)
		if err != nil {
			if !knownReason(err) {
				t.Fatalf("state: unknown refusal %v", err)
			}
			return
		}
		re, err := EncodeState(s)
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("state %x re-encodes to %x (%v)", b, re, err)
		}
		tb := newTable(t, "n1")
		if err := tb.MergeState(b); err != nil {
			t.Fatalf("decoded state refused by merge: %v", err)
		}
	})
}

func knownReason(err error) bool {
	we, ok := err.(*WireError)
	if !ok {
		return false
	}
	for _, r := range Reasons {
		if we.Reason == r {
			return true
		}
	}
	return false
}
