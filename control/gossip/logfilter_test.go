package gossip

import (
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLogFilter(t *testing.T) {
	rec := &recorder{}
	var refused atomic.Uint64
	now := time.Unix(1000, 0)
	lim := newRateLimiter(30 * time.Second)
	lim.now = func() time.Time { return now }
	f := &logFilter{log: slog.New(rec), limit: lim, onRefused: func() { refused.Add(1) }}
	ml := log.New(f, "", 0)

	// memberlist v0.7.0's wording for undecryptable packets and streams.
	for i := range 3 {
		ml.Printf("[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946")
		ml.Printf("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.9:%d", 40000+i)
	}
	ml.Printf("[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=10.0.0.8:40000")
	if got := refused.Load(); got != 7 {
		t.Fatalf("refused = %d, want 7", got)
	}
	if got := rec.count("gossip: refused message from 10.0.0.9:7946: wrong cluster key?"); got != 1 {
		t.Fatalf("10.0.0.9 logged %d times, want 1:\n%s", got, rec.dump())
	}
	if got := rec.count("gossip: refused message from 10.0.0.8:40000: wrong cluster key?"); got != 1 {
		t.Fatalf("10.0.0.8 logged %d times, want 1:\n%s", got, rec.dump())
	}
	now = now.Add(31 * time.Second)
	ml.Printf("[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946")
	if got := rec.count("refused message from 10.0.0.9", "suppressed=5"); got != 1 {
		t.Fatalf("after the interval: want one more line reporting 5 suppressed:\n%s", rec.dump())
	}

	// Levels follow memberlist's tags; expected noise is demoted.
	ml.Printf("[WARN] memberlist: Refuting a suspect message (from: n2)")
	ml.Printf("[DEBUG] memberlist: Stream connection from=10.0.0.7:1")
	ml.Printf("[ERR] memberlist: Failed fallback TCP ping: dial tcp 10.0.0.7:7946: connect: connection refused")
	ml.Printf("[INFO] memberlist: Marking n3 as failed, suspect timeout reached (0 peer confirmations)")
	for _, want := range []string{
		"WARN memberlist: Refuting a suspect message",
		"DEBUG memberlist: Stream connection",
		"DEBUG memberlist: Failed fallback TCP ping",
		"INFO memberlist: Marking n3 as failed",
	} {
		if rec.count(want) != 1 {
			t.Errorf("missing %q in:\n%s", want, rec.dump())
		}
	}
	if strings.Contains(rec.dump(), "[ERR]") {
		t.Errorf("raw memberlist tags leaked:\n%s", rec.dump())
	}
}

func TestRateLimiterBounded(t *testing.T) {
	lim := newRateLimiter(time.Hour)
	for i := range 3 * maxLimiterKeys {
		lim.allow(string(rune(i)))
	}
	if n := len(lim.keys); n > maxLimiterKeys {
		t.Fatalf("limiter holds %d keys, bound %d", n, maxLimiterKeys)
	}
}
