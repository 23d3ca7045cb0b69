package peek

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns the two ends of a fresh loopback TCP connection.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// queued returns the bytes in c's receive queue (SIOCINQ).
func queued(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	return n
}

// assertUnconsumed checks that c's receive queue holds exactly sent,
// waiting briefly for loopback segments in flight, then reads it.
func assertUnconsumed(t *testing.T, c *net.TCPConn, sent []byte) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); queued(t, c) < len(sent) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := queued(t, c); n != len(sent) {
		t.Fatalf("receive queue holds %d bytes, the client sent %d", n, len(sent))
	}
	got := make([]byte, len(sent))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("the bytes read after peeking differ from those sent")
	}
}

// trickle writes b in n pieces, gap apart, and closes done when finished.
func trickle(c *net.TCPConn, b []byte, n int, gap time.Duration) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		step := (len(b) + n - 1) / n
		for len(b) > 0 {
			k := min(step, len(b))
			if _, err := c.Write(b[:k]); err != nil {
				return
			}
			b = b[k:]
			time.Sleep(gap)
		}
	}()
	return done
}

func TestPeekerSlowSender(t *testing.T) {
	client, server := pair(t)
	req, err := os.ReadFile(filepath.Join("testdata", "http", "curl-post.http"))
	if err != nil {
		t.Fatal(err)
	}
	done := trickle(client, req, 12, 20*time.Millisecond)
	h, peeked, err := Peeker{FirstBytes: 2 * time.Second, Head: 5 * time.Second}.PeekHTTP(server)
	if err != nil {
		t.Fatal(err)
	}
	if h.Method != "POST" || h.Path != "/upload" || h.ContentLength != 300 || !bytes.Equal(peeked[:h.Len], req[:h.Len]) {
		t.Fatalf("peeked %+v", h)
	}
	<-done
	assertUnconsumed(t, server, req)
}

func TestPeekerOversizeHead(t *testing.T) {
	client, server := pair(t)
	req := headOfSize(3 * MaxHead)
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	_, _, err := Peeker{FirstBytes: 2 * time.Second, Head: 5 * time.Second}.PeekHTTP(server)
	if VerdictOf(err) != TooLarge || VerdictOf(err).HTTPStatus() != 431 {
		t.Fatalf("got %v, want too_large (431)", err)
	}
	assertUnconsumed(t, server, req)
}

func TestPeekerGarbage(t *testing.T) {
	client, server := pair(t)
	junk := []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00}
	if _, err := client.Write(junk); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err := Peeker{FirstBytes: 3 * time.Second, Head: 3 * time.Second}.PeekHTTP(server)
	if VerdictOf(err) != Bad || ReasonOf(err) != ReasonMethod {
		t.Fatalf("got %v, want bad (method)", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("garbage refused after %v: it must not wait for a timeout", el)
	}
	assertUnconsumed(t, server, junk)
}

// within checks that a timeout fired no earlier than d and not much later.
func within(t *testing.T, el, d time.Duration) {
	t.Helper()
	if el < d || el > d+500*time.Millisecond {
		t.Fatalf("gave up after %v, want %v (+500ms of scheduling slack)", el, d)
	}
}

func TestPeekerFirstBytesTimeout(t *testing.T) {
	_, server := pair(t)
	start := time.Now()
	_, _, err := Peeker{FirstBytes: 300 * time.Millisecond, Head: 5 * time.Second}.PeekHTTP(server)
	if VerdictOf(err) != Timeout || ReasonOf(err) != ReasonFirstBytesTimeout || VerdictOf(err).HTTPStatus() != 408 {
		t.Fatalf("got %v, want timeout (first_bytes_timeout, 408)", err)
	}
	within(t, time.Since(start), 300*time.Millisecond)
	if err := server.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// TestPeekerSlowloris: a head that keeps growing but never ends is cut off
// at Head, however steadily bytes arrive.
func TestPeekerSlowloris(t *testing.T) {
	client, server := pair(t)
	sent := []byte("GET / HTTP/1.1\r\nHost: h\r\nX-Drip: ")
	if _, err := client.Write(sent); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	dripped := make(chan []byte)
	go func() {
		var d []byte
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				dripped <- d
				return
			case <-tick.C:
				if _, err := client.Write([]byte("x")); err == nil {
					d = append(d, 'x')
				}
			}
		}
	}()
	start := time.Now()
	_, peeked, err := Peeker{FirstBytes: 300 * time.Millisecond, Head: 800 * time.Millisecond}.PeekHTTP(server)
	el := time.Since(start)
	close(stop)
	sent = append(sent, <-dripped...)
	if VerdictOf(err) != Timeout || ReasonOf(err) != ReasonHeadTimeout {
		t.Fatalf("got %v, want timeout (head_timeout)", err)
	}
	within(t, el, 800*time.Millisecond)
	if len(peeked) <= 34 {
		t.Fatalf("peeked %d bytes: the drip never arrived", len(peeked))
	}
	assertUnconsumed(t, server, sent)
}

func TestPeekerPeerCloses(t *testing.T) {
	t.Run("FIN behind a partial head", func(t *testing.T) {
		client, server := pair(t)
		client.Write([]byte("GET / HTTP/1.1\r\n"))
		time.Sleep(20 * time.Millisecond) // the Peeker sees the data first, then the FIN alone
		client.CloseWrite()
		start := time.Now()
		_, _, err := Peeker{FirstBytes: 3 * time.Second, Head: 3 * time.Second}.PeekHTTP(server)
		if VerdictOf(err) != Closed || ReasonOf(err) != ReasonPeerClosed || time.Since(start) > time.Second {
			t.Fatalf("got %v after %v, want closed (peer_closed) at once", err, time.Since(start))
		}
	})
	t.Run("FIN first", func(t *testing.T) {
		client, server := pair(t)
		client.CloseWrite()
		_, _, err := Peeker{FirstBytes: 3 * time.Second, Head: 3 * time.Second}.PeekHTTP(server)
		if VerdictOf(err) != Closed || ReasonOf(err) != ReasonPeerClosed {
			t.Fatalf("got %v, want closed (peer_closed)", err)
		}
	})
	t.Run("RST", func(t *testing.T) {
		client, server := pair(t)
		client.Write([]byte("GET / HT"))
		client.SetLinger(0)
		client.Close()
		_, _, err := Peeker{FirstBytes: 3 * time.Second, Head: 3 * time.Second}.PeekHTTP(server)
		if VerdictOf(err) != Closed || ReasonOf(err) != ReasonPeerReset {
			t.Fatalf("got %v, want closed (peer_reset)", err)
		}
	})
}

// TestPeekerThenServeHTTP: after a peek, net/http reads the whole request,
// body included, from the same socket.
func TestPeekerThenServeHTTP(t *testing.T) {
	client, server := pair(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB right behind the head
	head := "POST /upload HTTP/1.1\r\nHost: 198.18.0.100\r\nCookie: shoal_session=n2.x\r\nContent-Length: 1048576\r\n\r\n"
	go client.Write(append([]byte(head), body...))
	h, _, err := Peeker{}.PeekHTTP(server)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := h.Cookie("shoal_session"); v != "n2.x" || h.Len != len(head) {
		t.Fatalf("peeked %+v", h)
	}
	req, err := http.ReadRequest(bufio.NewReader(server))
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	if n, err := io.Copy(got, req.Body); err != nil || n != int64(len(body)) {
		t.Fatalf("body: %d bytes, %v", n, err)
	}
	if want := sha256.Sum256(body); !bytes.Equal(got.Sum(nil), want[:]) {
		t.Fatal("body differs after the peek")
	}
}

// TestPeekerThenTLSHandshake: after peeking a real ClientHello, crypto/tls
// completes the handshake on the same socket: nothing was consumed.
func TestPeekerThenTLSHandshake(t *testing.T) {
	client, server := pair(t)
	cert := testCert(t, "video.example.test")
	errc := make(chan error, 1)
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "video.example.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if _, err := c.Write([]byte("ping")); err != nil {
			errc <- err
			return
		}
		var b [4]byte
		_, err := io.ReadFull(c, b[:])
		if err == nil && string(b[:]) != "pong" {
			err = io.ErrUnexpectedEOF
		}
		errc <- err
	}()
	ch, _, err := Peeker{}.PeekClientHello(server)
	if err != nil {
		t.Fatal(err)
	}
	if ch.SNI != "video.example.test" || len(ch.ALPN) != 1 || ch.ALPN[0] != "http/1.1" {
		t.Fatalf("peeked %+v", ch)
	}
	s := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	var b [4]byte
	if _, err := io.ReadFull(s, b[:]); err != nil || string(b[:]) != "ping" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestPeekerHeadWaiting: a head already queued is read in one peek that
// allocates about its own size (the 16 KiB buffer is pooled; under the
// race detector sync.Pool drops a quarter of what it is given, so there
// only the result is checked) and consumes nothing.
func TestPeekerHeadWaiting(t *testing.T) {
	client, server := pair(t)
	req := []byte("GET /obj/1k HTTP/1.1\r\nHost: shoal\r\n\r\n")
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	for queued(t, server) < len(req) {
		time.Sleep(time.Millisecond)
	}
	var p Peeker
	const runs = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if h, _, err := p.PeekHTTP(server); err != nil || h.Path != "/obj/1k" {
			t.Fatalf("peek: %+v, %v", h, err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 1024 && !raceEnabled {
		t.Errorf("a peek of a queued %d-byte head allocates %d bytes", len(req), per)
	}
	assertUnconsumed(t, server, req)
}
