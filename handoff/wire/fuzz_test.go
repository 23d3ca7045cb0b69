package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzOpen feeds frames to the decoder. Random bytes almost never carry a
// valid MAC, so the harness also re-seals each input (fixing its length
// field and MAC with the test key) to reach the body decoder. Properties:
// no panic; a frame that opens re-encodes to exactly the same bytes
// (canonical: one message, one encoding); a refusal has a known reason.
func FuzzOpen(f *testing.F) {
	k := testKey(f)
	for _, g := range goldens {
		frame, err := Seal(k, goldenHeader, g.body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame[:len(frame)-macSize])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(frame []byte) {
			m, err := open(k, frame)
			if err != nil {
				if ReasonOf(err) == "io" {
					t.Fatalf("refusal without a reason: %v", err)
				}
				return
			}
			again, err := Seal(k, m.Header, m.Body)
			if err != nil {
				t.Fatalf("decoded %+v but cannot re-encode it: %v", m, err)
			}
			if !bytes.Equal(again, frame) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, frame)
			}
		}
		check(b)
		if len(b) >= headerSize && len(b) < MaxFrame {
			body := bytes.Clone(b)
			binary.BigEndian.PutUint32(body[8:], uint32(len(body)-headerSize))
			check(appendMAC(k, body))
		}
		if _, err := ReadFrame(bytes.NewReader(b)); err != nil && len(b) >= headerSize && ReasonOf(err) == "io" && !isEOF(err) {
			t.Fatalf("ReadFrame: %v", err)
		}
	})
}

func isEOF(err error) bool {
	return err.Error() == "EOF" || err.Error() == "unexpected EOF"
}
