package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
)

// pair returns the two ends of a fresh loopback TCP connection.
func pair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// setup returns client ↔ [relay] ↔ upstream: the client's and upstream's
// ends, and the relay's two ends.
func setup(t *testing.T) (client, relayClient, relayUp, upstream *net.TCPConn) {
	client, relayClient = pair(t)
	relayUp, upstream = pair(t)
	return
}

func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>13)
	}
	return b
}

type relayed struct {
	res Result
	err error
}

func start(ctx context.Context, a, b *net.TCPConn, o Options) chan relayed {
	ch := make(chan relayed, 1)
	go func() {
		r, err := Relay(ctx, a, b, o)
		ch <- relayed{r, err}
	}()
	return ch
}

func sum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n, err
}

// TestRelayBothWays: a 32 MiB upload, half-closed, then a 48 MiB answer:
// both arrive intact, half-closes propagate, and the counters add up.
func TestRelayBothWays(t *testing.T) {
	client, rc, ru, upstream := setup(t)
	var counters Counters
	done := start(context.Background(), rc, ru, Options{Counters: &counters, Idle: 5 * time.Second})
	up, down := pattern(1, 32<<20), pattern(2, 48<<20)
	go func() {
		client.Write(up)
		client.CloseWrite()
	}()
	got, n, err := sum(upstream) // until the relayed half-close
	if err != nil || n != int64(len(up)) || got != sha256.Sum256(up) {
		t.Fatalf("upstream got %d bytes (%v), digest match %v", n, err, got == sha256.Sum256(up))
	}
	go func() {
		upstream.Write(down)
		upstream.CloseWrite()
	}()
	got, n, err = sum(client)
	if err != nil || n != int64(len(down)) || got != sha256.Sum256(down) {
		t.Fatalf("client got %d bytes (%v), digest match %v", n, err, got == sha256.Sum256(down))
	}
	r := <-done
	if r.err != nil || r.res.ToUpstream != int64(len(up)) || r.res.ToClient != int64(len(down)) {
		t.Fatalf("relay: %+v, %v", r.res, r.err)
	}
	if counters.Started.Load() != 1 || counters.Finished.Load() != 1 || counters.Failed.Load() != 0 || counters.Active.Load() != 0 ||
		counters.ToUpstream.Load() != uint64(len(up)) || counters.ToClient.Load() != uint64(len(down)) {
		t.Fatalf("counters: started %d finished %d failed %d active %d up %d down %d", counters.Started.Load(), counters.Finished.Load(),
			counters.Failed.Load(), counters.Active.Load(), counters.ToUpstream.Load(), counters.ToClient.Load())
	}
}

// TestRelayPeekedRequestFirst: the origin peeked the request to decide,
// then falls back to relaying: the peeked bytes are relayed like any
// others, the body behind them too.
func TestRelayPeekedRequestFirst(t *testing.T) {
	client, rc, ru, upstream := setup(t)
	req := append([]byte("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n"), pattern(3, 1<<20)...)
	go client.Write(req)
	if h, _, err := (peek.Peeker{}).PeekHTTP(rc); err != nil || h.ContentLength != 1<<20 {
		t.Fatalf("peek: %+v, %v", h, err)
	}
	done := start(context.Background(), rc, ru, Options{})
	got := make([]byte, len(req))
	upstream.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(upstream, got); err != nil || !bytes.Equal(got, req) {
		t.Fatalf("upstream read %d bytes differently: %v", len(got), err)
	}
	client.Close()
	upstream.Close()
	<-done
}

func TestRelayUpstreamReset(t *testing.T) {
	client, rc, ru, upstream := setup(t)
	var counters Counters
	done := start(context.Background(), rc, ru, Options{Counters: &counters})
	client.Write([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
	upstream.Write(pattern(4, 1000))
	time.Sleep(50 * time.Millisecond)
	upstream.SetLinger(0)
	upstream.Close() // a reset
	select {
	case r := <-done:
		if r.err == nil {
			t.Fatal("relay ended cleanly after the upstream reset")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay still running 5 s after the upstream reset")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(client); err == nil {
		t.Fatal("client saw a clean end; an aborted relay must not look like a complete response")
	}
	if counters.Failed.Load() != 1 || counters.Active.Load() != 0 {
		t.Fatalf("failed %d, active %d", counters.Failed.Load(), counters.Active.Load())
	}
}

func TestRelayCancel(t *testing.T) {
	client, rc, ru, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(ctx, rc, ru, Options{})
	cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("relay returned %v, want context.Canceled", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay still running after cancel")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("client read after cancel: %v, want a reset", err)
	}
}

// TestRelayIdle: nothing moving either way for Idle ends the relay; a
// response streaming slowly while the request side stays quiet does not.
func TestRelayIdle(t *testing.T) {
	t.Run("silent", func(t *testing.T) {
		_, rc, ru, _ := setup(t)
		begin := time.Now()
		r := <-start(context.Background(), rc, ru, Options{Idle: 300 * time.Millisecond})
		if el := time.Since(begin); !errors.Is(r.err, ErrIdle) || el < 300*time.Millisecond || el > 300*time.Millisecond+500*time.Millisecond {
			t.Fatalf("after %v: %v, want ErrIdle at 300 ms (+ a tick of 75 ms and scheduling slack)", el, r.err)
		}
	})
	t.Run("slow stream, quiet request side", func(t *testing.T) {
		client, rc, ru, upstream := setup(t)
		done := start(context.Background(), rc, ru, Options{Idle: 300 * time.Millisecond})
		go func() {
			for i := 0; i < 20; i++ { // 1 s of trickle, 50 ms apart
				upstream.Write([]byte("tick"))
				time.Sleep(50 * time.Millisecond)
			}
			upstream.CloseWrite()
		}()
		got, err := io.ReadAll(client)
		if err != nil || len(got) != 80 {
			t.Fatalf("client got %d bytes, %v; want 80 and a clean end", len(got), err)
		}
		client.CloseWrite()
		if r := <-done; r.err != nil {
			t.Fatalf("relay: %v", r.err)
		}
	})
}
