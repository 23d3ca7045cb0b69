package transfer

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// TestForgedFrameRefused: a HANDOFF sealed with another key gets no
// answer, is counted as "auth", closes its connection and touches
// neither the kernel nor the data plane; an authentic one on a fresh
// connection is still answered (here with a REFUSE: the VIP is not on
// this host, or TCP_REPAIR is not allowed without root).
func TestForgedFrameRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dp := &recorder{}
	dest := New(Config{Self: "b", Key: testKey(t), Timeout: time.Second, DataPlane: dp, Log: quietLog(t)})
	served := make(chan error, 1)
	go func() { served <- dest.Serve(ln, func(c *net.TCPConn, _ string) { t.Error("adopted"); c.Close() }) }()
	t.Cleanup(func() { ln.Close(); <-served })

	h := &wire.Handoff{Client: netip.MustParseAddrPort("198.19.202.10:40000"), VIP: netip.MustParseAddrPort("198.19.202.100:80"),
		Reason: wire.ReasonGroup, State: wire.TCPState{MSS: 1460, RecvQueue: []byte("GET / HTTP/1.1\r\n\r\n")}}
	other, _ := wire.DeriveKey([]byte("another cluster's key, 32 bytes!"))
	forged, err := wire.NewEndpoint(other, "a", 0, nil).Seal("b", 1, h)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(forged)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after a forged frame: read %d bytes, %v; want the connection closed without an answer", n, err)
	}
	if s := dest.Stats(); s.Refusals["auth"] != 1 || len(s.Failures) != 0 || dp.log() != "" {
		t.Fatalf("stats %+v, data plane %q; want one auth refusal and nothing else", s, dp.log())
	}

	// The real origin is still heard.
	origin := wire.NewEndpoint(testKey(t), "a", 0, nil)
	frame, _ := origin.Seal("b", 2, h)
	c2, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write(frame)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, err := wire.ReadFrame(c2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := origin.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.Body.(*wire.Refuse); !ok || r.Cause != wire.CauseRestore || m.HandoffID != 2 {
		t.Fatalf("answer %+v, want a restore refusal of handoff 2", m)
	}
	if dp.log() != "" {
		t.Errorf("data plane calls %q after a failed restore, want none", dp.log())
	}
}
