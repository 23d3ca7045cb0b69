package httpbench

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what wrk --latency printed for one run.
type WrkResult struct {
	Requests  int64
	Duration  time.Duration
	BytesRead float64
	P50, P99  time.Duration
	// Errors sums socket errors (connect, read, write, timeout) and
	// non-2xx/3xx responses.
	Errors int64
}

var (
	reSummary = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m|h), ([0-9.]+)([KMGT]?B) read`)
	rePct     = regexp.MustCompile(`^\s*(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	reSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrkDuration(v, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[unit]
	return time.Duration(f * mult), nil
}

// ParseWrk reads wrk's --latency output. wrk prints sizes in binary units
// (1KB = 1024 B) with two decimals.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := reSummary.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no \"N requests in T, B read\" line:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	var err error
	if r.Duration, err = wrkDuration(m[2], m[3]); err != nil {
		return r, fmt.Errorf("wrk duration %q: %v", m[2], err)
	}
	b, _ := strconv.ParseFloat(m[4], 64)
	r.BytesRead = b * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[5]]
	seen := 0
	for _, line := range strings.Split(out, "\n") {
		if p := rePct.FindStringSubmatch(line); p != nil {
			d, err := wrkDuration(p[2], p[3])
			if err != nil {
				return r, fmt.Errorf("wrk latency %q: %v", line, err)
			}
			if p[1] == "50" {
				r.P50 = d
			} else {
				r.P99 = d
			}
			seen++
		}
	}
	if seen != 2 && r.Requests > 0 {
		return r, fmt.Errorf("wrk output lacks the 50%% and 99%% latencies (run with --latency):\n%s", out)
	}
	if s := reSocket.FindStringSubmatch(out); s != nil {
		for _, v := range s[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.Errors += n
		}
	}
	if s := reNon2xx.FindStringSubmatch(out); s != nil {
		n, _ := strconv.ParseInt(s[1], 10, 64)
		r.Errors += n
	}
	return r, nil
}
