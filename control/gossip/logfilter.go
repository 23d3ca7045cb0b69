package gossip

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// logFilter receives memberlist's log lines ("[LEVEL] memberlist: text") and
// re-emits them through slog at the matching level. Lines that mean "a peer
// sent something we cannot decrypt" become one rate-limited, counted line
// naming the remote address, because memberlist repeats them for every
// packet and stream and never says the likely cause.
type logFilter struct {
	log       *slog.Logger
	limit     *rateLimiter
	onRefused func() // counts every refused message, logged or not
}

// refusalMarkers are lowercase fragments of memberlist's errors for a
// message that failed decryption or had the wrong encryption mode.
// Pinned by TestLogFilterRefused against memberlist v0.7.0's wording.
var refusalMarkers = []string{
	"no installed keys could decrypt",
	"decrypt packet failed",
	"unsupported encryption version",
	"payload is too small to decrypt",
	"cannot decrypt empty payload",
	"remote state is not encrypted",
	"encryption is not configured",
}

// quietMarkers are memberlist lines demoted to debug: expected noise while
// a crashed peer is being declared dead, or duplicated by our own clearer
// line (name conflicts are reported by the conflict delegate).
var quietMarkers = []string{
	"failed fallback tcp ping",
	"conflicting address for",
}

func (f *logFilter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[end+1:])
		}
	} else if strings.HasPrefix(line, "Err:") {
		level = slog.LevelWarn
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	lower := strings.ToLower(line)

	if addr, ok := remoteAddr(line); ok && containsAny(lower, refusalMarkers) {
		f.onRefused()
		if ok, suppressed := f.limit.allow(hostOf(addr)); ok {
			f.log.Warn("gossip: refused message from "+addr+": wrong cluster key?",
				"remote", addr, "detail", line, "suppressed", suppressed)
		}
		return len(p), nil
	}
	if containsAny(lower, quietMarkers) {
		level = slog.LevelDebug
	}
	if f.log.Enabled(context.Background(), level) {
		f.log.Log(context.Background(), level, "memberlist: "+line, "component", "memberlist")
	}
	return len(p), nil
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// remoteAddr extracts memberlist's "from=ADDR" suffix.
func remoteAddr(line string) (string, bool) {
	i := strings.LastIndex(line, "from=")
	if i < 0 {
		return "", false
	}
	addr := line[i+len("from="):]
	if j := strings.IndexAny(addr, " \t"); j >= 0 {
		addr = addr[:j]
	}
	if addr == "" || strings.HasPrefix(addr, "<") {
		return "", false
	}
	return addr, true
}

// hostOf strips the port: stream refusals come from a new ephemeral port
// each time, and the limit is meant per peer.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// rateLimiter allows one event per key per interval and counts the rest.
type rateLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*limitEntry
}

type limitEntry struct {
	last       time.Time
	suppressed uint64
}

const maxLimiterKeys = 4096

func newRateLimiter(interval time.Duration) *rateLimiter {
	return &rateLimiter{interval: interval, now: time.Now, keys: make(map[string]*limitEntry)}
}

// allow reports whether key may be logged now and how many events were
// suppressed for it since it was last allowed.
func (r *rateLimiter) allow(key string) (bool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	e, ok := r.keys[key]
	if ok && now.Sub(e.last) < r.interval {
		e.suppressed++
		return false, 0
	}
	if !ok {
		if len(r.keys) >= maxLimiterKeys {
			r.prune(now)
		}
		e = &limitEntry{}
		r.keys[key] = e
	}
	suppressed := e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}

// prune drops stale keys so a scan from many addresses cannot grow the map
// without bound; if all are fresh, it starts over.
func (r *rateLimiter) prune(now time.Time) {
	for k, e := range r.keys {
		if now.Sub(e.last) >= r.interval {
			delete(r.keys, k)
		}
	}
	if len(r.keys) >= maxLimiterKeys {
		clear(r.keys)
	}
}
