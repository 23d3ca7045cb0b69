package tcprepair

import (
	"testing"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// TestRestoredWindow: a window with a segment of room past snd_nxt is
// restored as dumped; one with less (closed, nearly closed, or shrunk
// below what is in flight) reaches one MSS past snd_nxt, and the largest
// window seen is at least that.
func TestRestoredWindow(t *testing.T) {
	queue := make([]byte, 10000)
	for _, c := range []struct {
		name             string
		sndWnd, maxWnd   uint32
		unsent           uint32
		wantWnd, wantMax uint32
	}{
		{"room for a segment", 4000 + 1448, 65535, 6000, 4000 + 1448, 65535},
		{"wide open", 1 << 20, 1 << 20, 10000, 1 << 20, 1 << 20},
		{"closed, nothing in flight", 0, 65535, 10000, 1448, 65535},
		{"closed, 4000 in flight", 0, 65535, 6000, 4000 + 1448, 65535},
		{"less than a segment of room", 4000 + 1447, 65535, 6000, 4000 + 1448, 65535},
		{"shrunk below what is in flight", 1000, 65535, 6000, 4000 + 1448, 65535},
		{"largest window seen raised", 0, 1000, 10000, 1448, 1448},
	} {
		st := &wire.TCPState{SendQueue: queue, Unsent: c.unsent, MSS: 1448,
			Window: wire.Window{SndWl1: 7, SndWnd: c.sndWnd, MaxWindow: c.maxWnd, RcvWnd: 9, RcvWup: 11}}
		got := RestoredWindow(st)
		want := wire.Window{SndWl1: 7, SndWnd: c.wantWnd, MaxWindow: c.wantMax, RcvWnd: 9, RcvWup: 11}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, want)
		}
	}
	if got := RestoredWindow(&wire.TCPState{}); got.SndWnd != 536 {
		t.Errorf("no MSS dumped: window %d, want the IPv4 default 536", got.SndWnd)
	}
}
