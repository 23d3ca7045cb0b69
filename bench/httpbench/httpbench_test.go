package httpbench

import (
	"bytes"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	for _, c := range []struct {
		file     string
		want     WrkResult
		bytesMin float64
	}{
		{"wrk-keepalive.txt", WrkResult{Requests: 3667, Duration: 5050 * time.Millisecond, P50: 9810 * time.Microsecond, P99: 51640 * time.Microsecond}, 3.58 * (1 << 30)},
		{"wrk-errors.txt", WrkResult{Requests: 2754, Duration: time.Second, P50: 830 * time.Microsecond, P99: 1200 * time.Millisecond, Errors: 10}, 3.34 * (1 << 20)},
	} {
		raw, err := os.ReadFile("testdata/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseWrk(string(raw))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if got.BytesRead != c.bytesMin {
			t.Errorf("%s: bytes %v, want %v", c.file, got.BytesRead, c.bytesMin)
		}
		got.BytesRead = 0
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.file, got, c.want)
		}
	}
	if _, err := ParseWrk("Running 1s test\nconnection refused\n"); err == nil {
		t.Error("output without a summary accepted")
	}
	noLatency := "  10 requests in 1.00s, 10.00KB read\n"
	if _, err := ParseWrk(noLatency); err == nil || !strings.Contains(err.Error(), "--latency") {
		t.Errorf("output without latencies: %v", err)
	}
}

func TestConfigs(t *testing.T) {
	n := NginxConfig("198.18.0.202", "/run/shoal-lab/content", "/run/shoal-lab/nginx-h2")
	for _, want := range []string{"worker_processes 1;", "listen 198.18.0.202:80", "root /run/shoal-lab/content;", "daemon off;", "access_log off;"} {
		if !strings.Contains(n, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, n)
		}
	}
	h := HAProxyConfig("198.18.0.201", []string{"198.18.0.202", "198.18.0.203", "198.18.0.204"})
	for _, want := range []string{"nbthread 2", "bind 198.18.0.201:80", "server o3 198.18.0.204:80", "mode http"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, h)
		}
	}
}

func sampleReport() *Report {
	r := &Report{Date: "2026-11-27T14:37:39Z", Commit: "55c082fd484d", ReplyPath: "kernel",
		IdleCPU: map[string]float64{"n1": 2.4, "n2": 6}}
	add := func(s, o, m string, rps, mbps, cpu float64) {
		// The machine's figure: the system's, plus the client's and the
		// softirq work the peers leave uncounted.
		r.Cells = append(r.Cells, Cell{System: s, Object: o, Mode: m, Requests: 100, RPS: rps, MBps: mbps, CPUPer1000: cpu, MachinePer1000: cpu + 0.1})
	}
	add(Shoal, "1m", "keep-alive", 1700, 1780, 1)
	add(HAProxy, "1m", "keep-alive", 700, 750, 3)
	add(Plain, "1m", "keep-alive", 2800, 2900, 0.4)
	add(Shoal, "1k", "keep-alive", 10000, 12, 0.2)
	add(HAProxy, "1k", "keep-alive", 40000, 50, 0.1)
	add(Shoal, "1k", "fresh", 5000, 6, 0.3)
	add(HAProxy, "1k", "fresh", 11000, 14, 0.6)
	r.Goals = goals(r)
	return r
}

func TestGoals(t *testing.T) {
	r := sampleReport()
	want := map[string]struct {
		v   float64
		met bool
	}{
		"1 MiB keep-alive MB/s, shoal / haproxy":                   {1780.0 / 750, true},
		"1 MiB keep-alive MB/s, shoal / plain":                     {1780.0 / 2900, true},
		"1 KiB keep-alive CPU-s/1000 req, shoal / haproxy":         {2, false},
		"1 KiB fresh CPU-s/1000 req, shoal / haproxy":              {0.5, true},
		"1 KiB keep-alive machine CPU-s/1000 req, shoal / haproxy": {1.5, false},
		"1 KiB fresh machine CPU-s/1000 req, shoal / haproxy":      {0.4 / 0.7, true},
		"idle CPU % of a core, n1":                                 {2.4, true},
		"idle CPU % of a core, n2":                                 {6, false},
	}
	if len(r.Goals) != len(want) {
		t.Fatalf("%d goals, want %d: %+v", len(r.Goals), len(want), r.Goals)
	}
	for _, g := range r.Goals {
		w, ok := want[g.Name]
		if !ok || abs(g.Value-w.v) > 1e-9 || g.Met != w.met {
			t.Errorf("goal %q = %v met %v; want %v met %v", g.Name, g.Value, g.Met, w.v, w.met)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestReportFiles(t *testing.T) {
	r := sampleReport()
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "NOT met") || !strings.Contains(b.String(), "haproxy") {
		t.Errorf("table:\n%s", b.String())
	}
	js, pngPath, err := r.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(js); err != nil || !strings.Contains(string(raw), `"cpu_seconds_per_1000_requests"`) || !strings.Contains(string(raw), `"machine_cpu_seconds_per_1000_requests"`) {
		t.Errorf("json %s: %v", js, err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() < 600 || img.Bounds().Dy() < 400 {
		t.Errorf("plot is %v", img.Bounds())
	}
	if err := r.Errors(); err != nil {
		t.Errorf("clean report has errors: %v", err)
	}
	r.Cells[0].Errors = 3
	if err := r.Errors(); err == nil {
		t.Error("a cell with errors passed")
	}
}

func TestParseStat(t *testing.T) {
	st, ok := parseStat("4242 (rte-worker-1) R 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 1 0 100 0 0")
	if !ok || st.name != "rte-worker-1" || st.ticks != 1290 {
		t.Errorf("got %+v %v", st, ok)
	}
	if _, ok := parseStat("garbage"); ok {
		t.Error("garbage accepted")
	}
	st, ok = parseStat("7 (a (weird) name) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0")
	if !ok || st.name != "a (weird) name" {
		t.Errorf("name with parentheses: %q %v", st.name, ok)
	}
}

func TestParseProcStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	busy, err := parseProcStat("cpu  100 2 30 5000 7 1 20 3 40 0\ncpu0 50 1 15 2500 3 0 10 1 20 0\nintr 1\n")
	if err != nil || abs(busy-1.56) > 1e-9 {
		t.Errorf("busy %v, %v; want 1.56 s (156 ticks: user, nice, system, irq, softirq, steal)", busy, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseStatOfAProcess(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime prio nice threads 0 starttime
	user := "4242 (go build) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 300 7 20 0 1 0 777 100"
	if st, ok := parseStat(user); !ok || st.kernelThread() || st.ticks != 1234+56 || st.start != "777" {
		t.Errorf("user process: %+v %v; want start 777 and 1290 ticks (utime and stime, not the reaped children's)", st, ok)
	}
	kthread := "14 (ksoftirqd/0) S 2 0 0 0 -1 69238848 0 0 0 0 0 900 0 0 20 0 1 0 10 0"
	if st, ok := parseStat(kthread); !ok || !st.kernelThread() {
		t.Errorf("%+v %v: a kernel thread not recognized, so it would count as another user's process", st, ok)
	}
}

func TestOthersDelta(t *testing.T) {
	before := map[string]uint64{"1@5": 100, "2@6": 50, "3@7": 10}
	// 1 grew by 20, 3 is gone, 4 is new, and PID 2 was reused by a new process.
	after := map[string]uint64{"1@5": 120, "4@9": 30, "2@8": 5}
	if got := othersDelta(before, after); abs(got-0.55) > 1e-9 {
		t.Errorf("others %v s, want 0.55 (20 + 30 + 5 ticks)", got)
	}
	if got := othersDelta(after, before); got < 0 {
		t.Errorf("negative: %v", got)
	}
}
