package dataplane

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"testing"
	"unsafe"
)

type implementation struct {
	name string
	new  func(ClassifierConfig) (Classifier, error)
}

var implementations = []implementation{
	{"c", func(c ClassifierConfig) (Classifier, error) { return NewCClassifier(c) }},
	{"go", func(c ClassifierConfig) (Classifier, error) { return NewReference(c) }},
}

// runStep feeds one frame to a classifier and returns verdict and output.
func runStep(c Classifier, s step) (Verdict, []byte) {
	f := append([]byte(nil), s.in...)
	var vs []Verdict
	var ls []int
	if s.tap {
		vs, ls = c.ClassifyTap([][]byte{f}, s.at)
	} else {
		vs, ls = c.ClassifyRX([][]byte{f}, s.at)
	}
	return vs[0], f[:ls[0]]
}

func TestFixtures(t *testing.T) {
	for _, impl := range implementations {
		for _, fx := range fixtures {
			t.Run(impl.name+"/"+fx.name, func(t *testing.T) {
				cfg := fxConfig()
				if fx.cfg != nil {
					fx.cfg(&cfg)
				}
				c, err := impl.new(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetOwnership(fxOwnership())
				for i, s := range fx.steps(t) {
					v, out := runStep(c, s)
					if v != s.verdict {
						t.Errorf("step %d: verdict %v, want %v", i, v, s.verdict)
					}
					want := s.out
					if want == nil {
						want = s.in
					}
					if v != Drop && !bytes.Equal(out, want) {
						t.Errorf("step %d: frame\n got %s\nwant %s", i, hex.EncodeToString(out), hex.EncodeToString(want))
					}
				}
				fx.expect(t, c.Counters(), c.Flows())
			})
		}
	}
}

// TestDifferentialFixtures replays every fixture through both classifiers
// in one burst, then compares counters and flow tables.
func TestDifferentialFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			cfg := fxConfig()
			if fx.cfg != nil {
				fx.cfg(&cfg)
			}
			cc, err := NewCClassifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ref, _ := NewReference(cfg)
			for _, c := range []Classifier{cc, ref} {
				c.SetOwnership(fxOwnership())
			}
			for i, s := range fx.steps(t) {
				v1, o1 := runStep(cc, s)
				v2, o2 := runStep(ref, s)
				if v1 != v2 || !bytes.Equal(o1, o2) {
					t.Fatalf("step %d: C says %v %x, Go says %v %x", i, v1, o1, v2, o2)
				}
			}
			if cc.Counters() != ref.Counters() {
				t.Errorf("counters differ:\n C %+v\nGo %+v", cc.Counters(), ref.Counters())
			}
			if cc.Flows() != ref.Flows() {
				t.Errorf("flows differ: C %+v, Go %+v", cc.Flows(), ref.Flows())
			}
		})
	}
}

// Counters is read straight from C memory: the two layouts must match,
// and Add must sum every field.
func TestCountersLayout(t *testing.T) {
	if got, want := int(unsafe.Sizeof(Counters{})), countersSizeC(); got != want {
		t.Fatalf("Counters is %d bytes, struct sdp_counters %d", got, want)
	}
	var a, b Counters
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := 0; i < va.NumField(); i++ {
		va.Field(i).SetUint(uint64(i + 1))
		vb.Field(i).SetUint(100)
	}
	a.Add(b)
	for i := 0; i < va.NumField(); i++ {
		if va.Field(i).Uint() != uint64(i+101) {
			t.Errorf("Add does not sum %s", va.Type().Field(i).Name)
		}
	}
}

// The worker passes the NIC's checksum verdict: a frame the NIC verified is
// not verified again, and one it found bad is dropped without a look.
func TestChecksumHints(t *testing.T) {
	cc, err := NewCClassifier(fxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.SetOwnership(fxOwnership())
	a, b := fromClient(portIn(true, 80)), fromClient(portIn(true, 81))
	a.syn, b.syn = true, true
	corrupt := tcpFrame(t, a)
	corrupt[14+20+16] ^= 1
	if v, _ := cc.ClassifyRXHinted([][]byte{corrupt}, 0, CsumGood); v[0] != ToKernel {
		t.Errorf("a frame the NIC verified was checked again: %v", v[0])
	}
	if v, _ := cc.ClassifyRXHinted([][]byte{tcpFrame(t, b)}, 0, CsumBad); v[0] != Drop {
		t.Errorf("a frame the NIC found bad was accepted: %v", v[0])
	}
	if v, _ := cc.ClassifyRXHinted([][]byte{tcpFrame(t, b)}, 0, CsumUnknown); v[0] != ToKernel {
		t.Errorf("a good frame without a verdict was dropped: %v", v[0])
	}
	if got := cc.Counters().BadChecksumDropped; got != 1 {
		t.Errorf("bad_checksum_dropped %d, want 1", got)
	}
}
