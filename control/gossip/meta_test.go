package gossip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenMeta is the meta pinned by testdata/meta_v1.golden.
var goldenMeta = Meta{
	Version:      1,
	NodeID:       "n1",
	Capacity:     100,
	Availability: 62.5,
	Health:       HealthDraining,
	Groups:       []string{"static", "video"},
	TableHash:    "9f86d081",
	Epoch:        7,
}

// goldenMetaV2 is the meta pinned by testdata/meta_v2.golden: goldenMeta
// from a node that can build range-table algorithm 2.
var goldenMetaV2 = func() Meta {
	m := goldenMeta
	m.Version, m.TableAlgorithm = MetaVersion2, 2
	return m
}()

// The golden file holds one hex-encoded meta per line; '#' starts a comment.
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var hexText strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		hexText.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(hexText.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func TestMetaGolden(t *testing.T) {
	got, err := EncodeMeta(goldenMeta)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		var s strings.Builder
		s.WriteString("# gossip Meta wire format version 1 (see meta.go); hex, comments after '#'\n")
		field := func(comment string, b []byte) { s.WriteString(hex.EncodeToString(b) + " # " + comment + "\n") }
		field("version", got[0:1])
		field("epoch 7", got[1:9])
		field("capacity 100.0", got[9:17])
		field("availability 62.5", got[17:25])
		field("health 2 = draining", got[25:26])
		field("node ID \"n1\"", got[26:29])
		field("table hash \"9f86d081\"", got[29:38])
		field("2 groups: \"static\", \"video\"", got[38:])
		if err := os.WriteFile(filepath.Join("testdata", "meta_v1.golden"), []byte(s.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readGolden(t, "meta_v1.golden")
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeMeta changed the frozen format:\n got %x\nwant %x", got, want)
	}
	dec, err := DecodeMeta(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dec, goldenMeta) {
		t.Fatalf("DecodeMeta(golden) = %+v, want %+v", dec, goldenMeta)
	}
}

// TestMetaGoldenV2 pins version 2: version 1's fields, then the table
// algorithm byte.
func TestMetaGoldenV2(t *testing.T) {
	got, err := EncodeMeta(Meta{NodeID: goldenMeta.NodeID, Capacity: goldenMeta.Capacity, Availability: goldenMeta.Availability,
		Health: goldenMeta.Health, Groups: goldenMeta.Groups, TableHash: goldenMeta.TableHash, Epoch: goldenMeta.Epoch, TableAlgorithm: 2})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		var s strings.Builder
		s.WriteString("# gossip Meta wire format version 2 (see meta.go); hex, comments after '#'\n")
		field := func(comment string, b []byte) { s.WriteString(hex.EncodeToString(b) + " # " + comment + "\n") }
		field("version", got[0:1])
		field("epoch 7", got[1:9])
		field("capacity 100.0", got[9:17])
		field("availability 62.5", got[17:25])
		field("health 2 = draining", got[25:26])
		field("node ID \"n1\"", got[26:29])
		field("table hash \"9f86d081\"", got[29:38])
		field("2 groups: \"static\", \"video\"", got[38:len(got)-1])
		field("table algorithm 2", got[len(got)-1:])
		if err := os.WriteFile(filepath.Join("testdata", "meta_v2.golden"), []byte(s.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readGolden(t, "meta_v2.golden")
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeMeta changed the frozen format:\n got %x\nwant %x", got, want)
	}
	v1 := readGolden(t, "meta_v1.golden")
	if !bytes.Equal(want[1:len(want)-1], v1[1:]) || want[0] != 2 {
		t.Fatalf("version 2 is not version 1 plus one byte:\nv2 %x\nv1 %x", want, v1)
	}
	dec, err := DecodeMeta(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dec, goldenMetaV2) || dec.TableAlgorithmMax() != 2 {
		t.Fatalf("DecodeMeta(golden v2) = %+v, want %+v", dec, goldenMetaV2)
	}
}

// TestMetaVersionChoice: a node that builds only algorithm 1 writes
// version-1 metas byte for byte, so nodes that know only version 1 (which
// reject any other version) keep reading it during a rolling upgrade; a
// version-1 meta counts as algorithm 1.
func TestMetaVersionChoice(t *testing.T) {
	v1 := readGolden(t, "meta_v1.golden")
	for _, algo := range []uint8{0, 1} {
		m := goldenMeta
		m.Version, m.TableAlgorithm = 0, algo
		got, err := EncodeMeta(m)
		if err != nil || !bytes.Equal(got, v1) {
			t.Fatalf("table algorithm %d: %x, %v; want the version-1 golden bytes", algo, got, err)
		}
	}
	dec, err := DecodeMeta(v1)
	if err != nil || dec.TableAlgorithm != 0 || dec.TableAlgorithmMax() != 1 {
		t.Fatalf("version-1 meta: %+v %v, want table algorithm max 1", dec, err)
	}
	// Version 2 asked for explicitly carries algorithm 1 too.
	m := goldenMeta
	m.Version, m.TableAlgorithm = MetaVersion2, 0
	b, err := EncodeMeta(m)
	if err != nil || b[0] != 2 || b[len(b)-1] != 1 {
		t.Fatalf("explicit version 2: %x %v", b, err)
	}
	if dec, err := DecodeMeta(b); err != nil || dec.TableAlgorithm != 1 || dec.Version != 2 {
		t.Fatalf("decoded %+v %v", dec, err)
	}
	// Version 1 cannot say "algorithm 2".
	m = goldenMeta
	m.TableAlgorithm = 2
	if _, err := EncodeMeta(m); !errors.Is(err, ErrMetaVersion) {
		t.Fatalf("version 1 with table algorithm 2: err = %v, want ErrMetaVersion", err)
	}
	// A version-2 meta whose algorithm byte is 0 is malformed.
	bad := readGolden(t, "meta_v2.golden")
	bad[len(bad)-1] = 0
	if _, err := DecodeMeta(bad); !errors.Is(err, ErrMetaMalformed) || !strings.Contains(err.Error(), "table algorithm") {
		t.Fatalf("algorithm 0: err = %v", err)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	long := strings.Repeat("x", maxField)
	for _, m := range []Meta{
		{NodeID: "a"},
		{NodeID: "node-β", Capacity: MaxCapacity, Availability: MaxCapacity, Health: HealthUnhealthy, Epoch: math.MaxUint64},
		{NodeID: long, TableHash: strings.Repeat("f", 64), Groups: []string{"g", long[:100]}},
		{NodeID: "b", TableAlgorithm: 2},
		{NodeID: "c", TableAlgorithm: 255, Groups: []string{"x"}},
	} {
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("EncodeMeta(%+v): %v", m, err)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("DecodeMeta: %v", err)
		}
		m.Version = MetaVersion1
		if m.TableAlgorithm > 1 {
			m.Version = MetaVersion2
		}
		if m.Health == "" {
			m.Health = HealthHealthy
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func goldenBytes(t *testing.T) []byte {
	b, err := EncodeMeta(goldenMeta)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setFloat(b []byte, off int, v float64) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint64(b[off:], math.Float64bits(v))
	return b
}

const capOff, availOff = 9, 17

func TestDecodeMetaRejectsNewerVersion(t *testing.T) {
	b := readGolden(t, "meta_v2.golden")
	b[0] = 3
	_, err := DecodeMeta(b)
	if !errors.Is(err, ErrMetaVersion) {
		t.Fatalf("version 3: err = %v, want ErrMetaVersion", err)
	}
	if !strings.Contains(err.Error(), "version 3") {
		t.Fatalf("error %q does not name the peer's version", err)
	}
	if _, _, err := DecodeMetaSanitized(b); !errors.Is(err, ErrMetaVersion) {
		t.Fatalf("sanitized path accepted version 3: %v", err)
	}
	b[0] = 0
	if _, err := DecodeMeta(b); !errors.Is(err, ErrMetaVersion) {
		t.Fatalf("version 0: err = %v", err)
	}
	if _, err := EncodeMeta(Meta{Version: 3, NodeID: "a"}); !errors.Is(err, ErrMetaVersion) {
		t.Fatalf("EncodeMeta version 3: err = %v", err)
	}
}

func TestDecodeMetaRejectsNonFinite(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, off := range []int{capOff, availOff} {
			b := setFloat(goldenBytes(t), off, v)
			if _, err := DecodeMeta(b); !errors.Is(err, ErrMetaNotFinite) {
				t.Errorf("DecodeMeta(%v at %d): err = %v, want ErrMetaNotFinite", v, off, err)
			}
			if _, _, err := DecodeMetaSanitized(b); !errors.Is(err, ErrMetaNotFinite) {
				t.Errorf("DecodeMetaSanitized(%v at %d): err = %v, want ErrMetaNotFinite", v, off, err)
			}
		}
		if _, err := EncodeMeta(Meta{NodeID: "a", Capacity: v}); !errors.Is(err, ErrMetaNotFinite) {
			t.Errorf("EncodeMeta(capacity %v): err = %v", v, err)
		}
	}
}

func TestMetaOutOfRangeStrictAndClamped(t *testing.T) {
	for _, tc := range []struct {
		name            string
		capacity, avail float64
		wantCap, wantAv float64
	}{
		{"negative capacity", -5, 0, 0, 0},
		{"negative availability", 10, -1, 10, 0},
		{"huge capacity", 1e300, 1e300, MaxCapacity, MaxCapacity},
		{"just above max", MaxCapacity + 1, 3, MaxCapacity, 3},
		{"availability above capacity", 10, 20, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setFloat(setFloat(goldenBytes(t), capOff, tc.capacity), availOff, tc.avail)
			if _, err := DecodeMeta(b); !errors.Is(err, ErrMetaOutOfRange) {
				t.Fatalf("strict DecodeMeta: err = %v, want ErrMetaOutOfRange", err)
			}
			m, clamped, err := DecodeMetaSanitized(b)
			if err != nil || !clamped {
				t.Fatalf("DecodeMetaSanitized: clamped=%v err=%v", clamped, err)
			}
			if m.Capacity != tc.wantCap || m.Availability != tc.wantAv {
				t.Fatalf("clamped to capacity %v availability %v, want %v %v", m.Capacity, m.Availability, tc.wantCap, tc.wantAv)
			}
			if _, err := EncodeMeta(Meta{NodeID: "a", Capacity: tc.capacity, Availability: tc.avail}); !errors.Is(err, ErrMetaOutOfRange) {
				t.Fatalf("EncodeMeta accepted an out-of-range value: %v", err)
			}
		})
	}
	m, clamped, err := Sanitize(goldenMeta)
	if err != nil || clamped || !reflect.DeepEqual(m, goldenMeta) {
		t.Fatalf("Sanitize changed a valid meta: %+v clamped=%v err=%v", m, clamped, err)
	}
}

func TestMetaOversize(t *testing.T) {
	if _, err := DecodeMeta(make([]byte, MetaMaxSize+1)); !errors.Is(err, ErrMetaOversize) {
		t.Fatalf("DecodeMeta(513 bytes): err = %v, want ErrMetaOversize", err)
	}
	m := Meta{NodeID: "a"}
	for range 10 {
		m.Groups = append(m.Groups, strings.Repeat("g", 60))
	}
	if _, err := EncodeMeta(m); !errors.Is(err, ErrMetaOversize) {
		t.Fatalf("EncodeMeta(10 groups of 60 bytes): err = %v, want ErrMetaOversize", err)
	}
}

func TestDecodeMetaMalformed(t *testing.T) {
	b := goldenBytes(t)
	for _, g := range [][]byte{b, readGolden(t, "meta_v2.golden")} {
		for n := range len(g) {
			if _, err := DecodeMeta(g[:n]); err == nil {
				t.Fatalf("DecodeMeta accepted a truncation of %x to %d bytes", g, n)
			}
		}
		if _, err := DecodeMeta(append(bytes.Clone(g), 1)); !errors.Is(err, ErrMetaMalformed) {
			t.Fatalf("trailing byte after %x: err = %v", g, err)
		}
	}
	bad := bytes.Clone(b)
	bad[25] = 9
	if _, err := DecodeMeta(bad); !errors.Is(err, ErrMetaHealth) {
		t.Fatalf("health code 9: err = %v", err)
	}
	bad = bytes.Clone(b)
	bad[27] = 0xff // first byte of the node ID: invalid UTF-8
	if _, err := DecodeMeta(bad); !errors.Is(err, ErrMetaMalformed) {
		t.Fatalf("invalid UTF-8: err = %v", err)
	}
	for _, m := range []Meta{{}, {NodeID: "a", Health: "sleepy"}, {NodeID: "a", Groups: []string{""}}} {
		if _, err := EncodeMeta(m); err == nil {
			t.Fatalf("EncodeMeta(%+v) accepted", m)
		}
	}
}

// FuzzDecodeMeta: decoding never panics, and whatever decodes re-encodes to
// the same bytes (the format is canonical).
func FuzzDecodeMeta(f *testing.F) {
	g, _ := EncodeMeta(goldenMeta)
	f.Add(g)
	g2, _ := EncodeMeta(goldenMetaV2)
	f.Add(g2)
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			_, _, _ = DecodeMetaSanitized(b)
			return
		}
		again, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("decoded meta does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical:\n in %x\nout %x", b, again)
		}
	})
}
