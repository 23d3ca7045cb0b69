package local

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkServe measures requests on one keep-alive loopback connection
// given to ServeHTTP: static objects of 1 KiB and 1 MiB (sendfile), and a
// 1 KiB answer from an upstream on a unix socket. It is the "served
// locally" baseline beside which `shoal bench handoff` puts handoff and
// relay. static-1KiB-nethttp is static-1KiB without the fast path.
func BenchmarkServe(b *testing.B) {
	dir := b.TempDir()
	for _, size := range []int{1 << 10, 1 << 20} {
		obj := make([]byte, size)
		rand.Read(obj)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(size)), obj, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	sockDir, err := os.MkdirTemp("", "shoal-local")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	ln, err := net.Listen("unix", filepath.Join(sockDir, "up.sock"))
	if err != nil {
		b.Fatal(err)
	}
	kib := make([]byte, 1<<10)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(kib) })}
	go up.Serve(ln)
	defer up.Close()

	s, err := New(Config{Self: "n1", Content: dir, Upstreams: map[string]string{"cgi": "unix:" + ln.Addr().String()}, Group: cgiGroup})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(b.Context())
	// The same server without the fast path (fast.go): net/http alone.
	plain, err := New(Config{Self: "n1", Content: dir, NoFastPath: true})
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Shutdown(b.Context())
	for _, c := range []struct {
		name, path string
		size       int64
		s          *Server
	}{{"static-1KiB", "/1024", 1 << 10, s}, {"static-1KiB-nethttp", "/1024", 1 << 10, plain},
		{"static-1MiB", "/1048576", 1 << 20, s}, {"upstream-1KiB", "/x.cgi", 1 << 10, s}} {
		b.Run(c.name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			client, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			server, err := l.Accept()
			l.Close()
			if err != nil {
				b.Fatal(err)
			}
			c.s.ServeHTTP(server, "n2")
			br := bufio.NewReaderSize(client, 64<<10)
			req := []byte(get(c.path))
			b.SetBytes(c.size)
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != c.size || resp.StatusCode != 200 {
					b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
				}
			}
		})
	}
}
