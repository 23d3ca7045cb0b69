package dataplane

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// encodeSteps packs a fixture's steps into the fuzz input format: for each
// frame, one byte of direction (bit 0: from the tap), two bytes of time
// advance in ms, two bytes of length, then the frame.
func encodeSteps(steps []step) []byte {
	var out []byte
	var last uint32
	for _, s := range steps {
		d := byte(0)
		if s.tap {
			d = 1
		}
		adv := s.at - last
		if s.at < last {
			adv = 0
		}
		last += adv
		out = append(out, d)
		out = binary.BigEndian.AppendUint16(out, uint16(adv))
		out = binary.BigEndian.AppendUint16(out, uint16(len(s.in)))
		out = append(out, s.in...)
	}
	return out
}

// FuzzClassifiersAgree feeds the same frame sequence to the C classifier
// and the Go reference and requires identical verdicts, frames, counters
// and flow tables.
func FuzzClassifiersAgree(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(encodeSteps(fx.steps(f)))
	}
	cfg := fxConfig()
	cfg.MaxFlows, cfg.MaxHalfOpen = 64, 16
	f.Fuzz(func(t *testing.T, in []byte) {
		cc, err := NewCClassifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ref, _ := NewReference(cfg)
		cc.SetOwnership(fxOwnership())
		ref.SetOwnership(fxOwnership())
		var now uint32
		for len(in) >= 5 {
			tap := in[0]&1 == 1
			now += uint32(binary.BigEndian.Uint16(in[1:3]))
			n := int(binary.BigEndian.Uint16(in[3:5])) % (maxFrame + 1)
			in = in[5:]
			n = min(n, len(in))
			frame := in[:n]
			in = in[n:]
			s := step{tap: tap, at: now, in: frame}
			v1, o1 := runStep(cc, s)
			v2, o2 := runStep(ref, s)
			if v1 != v2 || !bytes.Equal(o1, o2) {
				t.Fatalf("frame %x (tap %v): C %v %x, Go %v %x", frame, tap, v1, o1, v2, o2)
			}
		}
		if cc.Counters() != ref.Counters() || cc.Flows() != ref.Flows() {
			t.Fatalf("state differs:\n C %+v %+v\nGo %+v %+v", cc.Counters(), cc.Flows(), ref.Counters(), ref.Flows())
		}
		if a, b := cc.Sweep(now+1_000_000), ref.Sweep(now+1_000_000); a != b {
			t.Fatalf("sweep removed %d in C, %d in Go", a, b)
		}
	})
}
