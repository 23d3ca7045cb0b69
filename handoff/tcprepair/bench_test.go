package tcprepair

import (
	"bytes"
	"fmt"
	"github.com/shoal-lb/shoal/internal/netns/netnstest"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// BenchmarkHandoffSteps measures one handoff of a freshly peeked request,
// from the freeze to a restored socket: freeze, dump, seal the HANDOFF,
// open it, restore. Origin and destination are one loopback namespace
// here (the origin closes its frozen socket before the restore, which two
// nodes need not do), so the figure is the CPU cost of the steps without a
// network round trip. It reports the p50 and p99 beside the goal of the
// issue (p99 under 500 µs, freeze to destination owning the socket, in the
// lab). Needs root: go test -run XXX -bench HandoffSteps ./handoff/tcprepair
func BenchmarkHandoffSteps(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	ns := benchNS(b)
	key, err := wire.DeriveKey([]byte("shoal bench cluster key, 32 byte"))
	if err != nil {
		b.Fatal(err)
	}
	origin, dest := wire.NewEndpoint(key, "a", 0, nil), wire.NewEndpoint(key, "b", 0, nil)
	request := []byte("GET /app.cgi HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: shoal_session=n2.abc\r\n\r\n")
	lat := make([]time.Duration, 0, b.N)
	err = inNS(ns, func() error {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080})
		if err != nil {
			return err
		}
		defer ln.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			client, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
			if err != nil {
				return err
			}
			conn, err := ln.AcceptTCP()
			if err != nil {
				return err
			}
			client.Write(request)
			if _, _, err := (peek.Peeker{}).PeekHTTP(conn); err != nil {
				return err
			}
			t0 := time.Now()
			frozen, err := Freeze(conn)
			if err != nil {
				return err
			}
			st, err := frozen.Dump()
			if err != nil {
				return err
			}
			frame, err := origin.Seal("b", uint64(i), &wire.Handoff{Client: frozen.Remote(), VIP: frozen.Local(), Reason: wire.ReasonGroup, State: st})
			if err != nil {
				return err
			}
			m, err := dest.Open(frame)
			if err != nil {
				return err
			}
			frozen.Close()
			h := m.Body.(*wire.Handoff)
			r, err := Restore(h.VIP, h.Client, &h.State, Options{})
			if err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
			moved, err := r.Release(time.Time{})
			if err != nil {
				return err
			}
			got := make([]byte, len(request))
			if _, err := io.ReadFull(moved, got); err != nil || !bytes.Equal(got, request) {
				return fmt.Errorf("restored socket read %q, %v", got, err)
			}
			moved.Close()
			client.Close()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(500, "goal-p99-µs")
}

// benchNS makes a namespace for a benchmark.
func benchNS(b *testing.B) string {
	b.Helper()
	if !canRepair() {
		b.Skip("needs root: TCP_REPAIR needs CAP_NET_ADMIN and the benchmark makes a network namespace")
	}
	return netnstest.New(b, "shoalrt", "bench")
}
