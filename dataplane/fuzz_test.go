package dataplane

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The fuzz input is a sequence of records, one per frame: a control byte
// (bit 0: from the tap; bit 1: start a new burst; bits 2-4: publish
// ownerships[n-1] first, n = 0 for none), two bytes of time advance in ms,
// two bytes of length, then the frame. Consecutive frames of one direction
// at one instant form a burst of up to 32, classified in one call.

// encodeBursts packs bursts into the fuzz input format.
func encodeBursts(bs []burst) []byte {
	var out []byte
	var last uint32
	for _, b := range bs {
		for j, f := range b.frames {
			d := byte(0)
			if b.tap {
				d |= 1
			}
			adv := uint32(0)
			if j == 0 {
				d |= 2
				if b.own != nil {
					for k, o := range ownerships {
						if o == b.own {
							d |= byte(k+1) << 2
						}
					}
				}
				if b.at > last {
					adv = min(b.at-last, 65535)
				}
				last += adv
			}
			out = append(out, d)
			out = binary.BigEndian.AppendUint16(out, uint16(adv))
			out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
			out = append(out, f...)
		}
	}
	return out
}

// encodeSteps packs a fixture's steps, one burst each.
func encodeSteps(steps []step) []byte {
	var bs []burst
	for _, s := range steps {
		bs = append(bs, burst{tap: s.tap, at: s.at, frames: [][]byte{s.in}})
	}
	return encodeBursts(bs)
}

// decodeBursts is the inverse, tolerant of any input.
func decodeBursts(in []byte) []burst {
	var bs []burst
	var now uint32
	for len(in) >= 5 {
		d := in[0]
		tap := d&1 == 1
		adv := uint32(binary.BigEndian.Uint16(in[1:3]))
		n := int(binary.BigEndian.Uint16(in[3:5])) % (maxFrame + 1)
		in = in[5:]
		n = min(n, len(in))
		frame := in[:n]
		in = in[n:]
		now += adv
		var own *Ownership
		if k := int(d>>2) & 7; k >= 1 && k <= len(ownerships) {
			own = ownerships[k-1]
		}
		if len(bs) == 0 || d&2 != 0 || own != nil || adv != 0 || bs[len(bs)-1].tap != tap || len(bs[len(bs)-1].frames) == 32 {
			bs = append(bs, burst{tap: tap, at: now, own: own})
		}
		bs[len(bs)-1].frames = append(bs[len(bs)-1].frames, frame)
	}
	return bs
}

// fuzzConfig has a small table so that the bounds are reached.
func fuzzConfig() ClassifierConfig {
	cfg := fxConfig()
	cfg.MaxFlows, cfg.MaxHalfOpen = 64, 16
	return cfg
}

// FuzzClassifiersAgree feeds the same bursts to the C classifier and the Go
// reference and requires identical verdicts, frames, counters and flow
// tables. Its corpus, testdata/fuzz/FuzzClassifiersAgree, holds every
// fixture and generated TCP-shaped sequences (TestWriteFuzzCorpus), and the
// inputs that widened coverage in a two-minute `make fuzz` (found-*); a
// plain `go test` runs them all.
func FuzzClassifiersAgree(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(encodeSteps(fx.steps(f)))
	}
	var tuples [][2]uint16
	for p := 20000; p < 20040; p++ {
		tuples = append(tuples, [2]uint16{uint16(p), 80})
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		bs := decodeBursts(in)
		if len(bs) == 0 {
			return
		}
		agree(t, fuzzConfig(), bs, tuples)
	})
}

// TestWriteFuzzCorpus rewrites the committed seed corpus when
// SHOAL_WRITE_CORPUS=1: each fixture, and TCP-shaped sequences from the
// traffic generator in bursts with ownership changes.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SHOAL_WRITE_CORPUS") != "1" {
		t.Skip("set SHOAL_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzClassifiersAgree")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzClassifiersAgree")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, fx := range fixtures {
		write(fmt.Sprintf("fixture-%02d", i), encodeSteps(fx.steps(t)))
	}
	for seed := int64(1); seed <= 12; seed++ {
		g := newGen(t, 1000+seed)
		g.small = true
		write(fmt.Sprintf("traffic-%02d", seed), encodeBursts(g.bursts(12)))
	}
}
