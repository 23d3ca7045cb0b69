package front

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// acceptedOptions dials ln and reads the TCP options of the connection it
// accepts.
func acceptedOptions(t *testing.T, ln net.Listener) [5]int {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out [5]int
	var gerr error
	rc.Control(func(fd uintptr) {
		for i, o := range [][2]int{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			{unix.IPPROTO_TCP, unix.TCP_NODELAY},
		} {
			v, err := unix.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				gerr = err
			}
			out[i] = v
		}
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	return out
}

// TestListenAcceptsAsGo: a connection accepted from Listen has the
// keepalive and no-delay options of one accepted from Go's own listener
// (keepalive on, 15 s, 15 s, 9 probes), though Go set none of them on it.
func TestListenAcceptsAsGo(t *testing.T) {
	std, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer std.Close()
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want, got := acceptedOptions(t, std), acceptedOptions(t, ln)
	if want != [5]int{1, 15, 15, 9, 1} {
		t.Fatalf("Go's own listener gives %v; this test expects keepalive 1, 15 s, 15 s, 9 and nodelay 1", want)
	}
	if got != want {
		t.Fatalf("accepted from Listen: keepalive, idle, interval, count, nodelay = %v; Go's listener: %v", got, want)
	}
}
