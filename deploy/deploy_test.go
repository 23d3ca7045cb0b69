package deploy

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/dataplane/report"
)

func TestParsePromQL(t *testing.T) {
	for expr, want := range map[string][]Selector{
		`up{job="shoal"} == 0`: {{Metric: "up", Matchers: []Matcher{{"job", "=", "shoal"}}}},
		`sum by (instance, counter) (rate(shoal_dataplane_frames_total{counter=~"a|b", instance=~"$instance"}[5m])) > 0`: {
			{Metric: "shoal_dataplane_frames_total", Matchers: []Matcher{{"counter", "=~", "a|b"}, {"instance", "=~", "$instance"}}}},
		`abs(shoal_member_share - shoal_member_weight / on(instance) group_left() sum by (instance) (shoal_member_weight)) > 0.01`: {
			{Metric: "shoal_member_share"}, {Metric: "shoal_member_weight"}, {Metric: "shoal_member_weight"}},
		`sum by (instance) (shoal_members) > count without (member) (shoal_member_share)`: {{Metric: "shoal_members"}, {Metric: "shoal_member_share"}},
		`min(shoal_members) < max(max_over_time(shoal_members[1h]))`:                      {{Metric: "shoal_members"}, {Metric: "shoal_members"}},
		`process_resident_memory_bytes / 2^30 and on() vector(1) offset 5m`:               {{Metric: "process_resident_memory_bytes"}},
		`rate(x{a="}\"{"}[$__rate_interval]) unless ignoring(b) y or {__name__="z"}`:      {{Metric: "x", Matchers: []Matcher{{"a", "=", `}\"{`}}}, {Metric: "y"}},
	} {
		got, err := parsePromQL(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", expr, got, want)
		}
	}
	for _, bad := range []string{`x{a="b"`, `x{a b}`, `rate(x[5m)`, `x{a="b}`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestAlertRules: the rules the issue asks for exist and each is complete:
// an expression, a severity, a summary, a for that parses.
func TestAlertRules(t *testing.T) {
	r, err := LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if seen[rule.Alert] {
				t.Errorf("alert %s twice", rule.Alert)
			}
			seen[rule.Alert] = true
			if !regexp.MustCompile(`^Shoal[A-Z][A-Za-z]+$`).MatchString(rule.Alert) || strings.TrimSpace(rule.Expr) == "" {
				t.Errorf("alert %q: bad name or empty expression", rule.Alert)
			}
			if s := rule.Labels["severity"]; s != "page" && s != "warn" && s != "info" {
				t.Errorf("alert %s: severity %q is not page, warn or info", rule.Alert, s)
			}
			if rule.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", rule.Alert)
			}
			if rule.For != "" {
				if _, err := time.ParseDuration(rule.For); err != nil {
					t.Errorf("alert %s: for %q: %v", rule.Alert, rule.For, err)
				}
			}
		}
	}
	// Node down, share deviation, failing health checks, table
	// disagreement, drops (issue 15).
	for _, want := range []string{"ShoalNodeDown", "ShoalShareDeviation", "ShoalHealthCheckFailing", "ShoalTableDisagreement", "ShoalDataplaneDrops", "ShoalNICDrops"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// TestDashboard: panels have unique IDs, fit the 24-column grid, and every
// panel but a row has queries.
func TestDashboard(t *testing.T) {
	d, err := LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard %q (%q) has %d panels", d.Title, d.UID, len(d.Panels))
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W < 1 || p.GridPos.H < 1 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type != "row" && (len(p.Targets) == 0 || p.Targets[0].Expr == "") {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}

// nodeServes is what a node's /metrics serves, read from its source: the
// shoal_* names written in node/metrics.go, and the label values that
// come from the counter structs (api.Fields names them for /metrics). The
// two process metrics come from VictoriaMetrics' WriteProcessMetrics. The
// lab test TestStatusPage checks the same files against a running node.
func nodeServes(t *testing.T) Served {
	src, err := os.ReadFile("../node/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	s := Served{}
	for _, m := range regexp.MustCompile(`(shoal_[a-z0-9_]+)`).FindAllStringSubmatch(string(src), -1) {
		s[m[1]] = map[string]map[string]bool{}
	}
	s["process_cpu_seconds_total"] = map[string]map[string]bool{}
	s["process_resident_memory_bytes"] = map[string]map[string]bool{}
	values := func(v any) map[string]bool {
		out := map[string]bool{}
		for _, f := range api.Fields(v) {
			out[f.Name] = true
		}
		return out
	}
	s["shoal_dataplane_frames_total"]["counter"] = values(report.Counters{})
	s["shoal_dataplane_flows"]["state"] = values(report.FlowCounts{})
	s["shoal_port_packets_total"]["counter"] = values(api.PortStats{})
	s["shoal_port_packets_total"]["port"] = map[string]bool{"nic": true, "tap": true}
	return s
}

// TestFilesNameServedMetrics: every metric and label value the dashboard
// and the alerts use is one the node writes.
func TestFilesNameServedMetrics(t *testing.T) {
	sel, err := Selectors()
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) < 40 {
		t.Fatalf("only %d selectors found in the files", len(sel))
	}
	for _, m := range Missing(sel, nodeServes(t)) {
		t.Error(m)
	}
}

// TestMissingFindsMistakes: a misspelled metric or label value is caught.
func TestMissingFindsMistakes(t *testing.T) {
	served := ParseMetrics("shoal_x_total{counter=\"rx\",worker=\"1\"} 5\nshoal_y 1\n# HELP z\n")
	sel, _ := parsePromQL(`rate(shoal_x_total{counter=~"rx|tx"}[1m]) + shoal_yy + up + shoal_x_total{counter="rx", instance="a"} + shoal_x_total{counter=~".*"}`)
	got := Missing(sel, served)
	if len(got) != 2 || !strings.Contains(got[0], `counter="tx"`) || !strings.Contains(got[1], "shoal_yy is not served") {
		t.Fatalf("Missing = %q", got)
	}
}
