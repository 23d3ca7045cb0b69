package fetch

import (
	"context"
	"net/netip"
	"testing"

	"github.com/shoal-lb/shoal/versions/store"
)

// BenchmarkFetch pulls a 16 MiB object over loopback into a fresh store
// per iteration: HTTP, hash, write, fsync, rename. MB/s is the figure.
func BenchmarkFetch(b *testing.B) {
	const size = 16 << 20
	src, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	sha, _, err := src.Ingest(data(9, size))
	if err != nil {
		b.Fatal(err)
	}
	addr := serve(b, Handler(src, loopback))
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		dst, err := store.Open(b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		f := &Fetcher{Store: dst}
		b.StartTimer()
		if err := f.Fetch(context.Background(), sha, size, []netip.AddrPort{addr}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		dst.Close()
		b.StartTimer()
	}
}
