package deploy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Served is what a /metrics page serves: metric → label → values seen.
type Served map[string]map[string]map[string]bool

var sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(text string) Served {
	s := Served{}
	for _, line := range strings.Split(text, "\n") {
		m := sample.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := s[m[1]]
		if labels == nil {
			labels = map[string]map[string]bool{}
			s[m[1]] = labels
		}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if labels[lp[1]] == nil {
				labels[lp[1]] = map[string]bool{}
			}
			labels[lp[1]][lp[2]] = true
		}
	}
	return s
}

// literal is a label value the node emits: no regex metacharacters and
// no Grafana variable.
var literal = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

// Missing lists what the selectors ask for and served lacks: a metric it
// does not serve, or a label value (of = or =~ with an alternation of
// literals) it never emits. Prometheus's own `up` and the target labels
// job and instance are Prometheus's, not the node's.
func Missing(sel []Selector, served Served) []string {
	var out []string
	for _, s := range sel {
		if s.Metric == "up" {
			continue
		}
		labels, ok := served[s.Metric]
		if !ok {
			out = append(out, fmt.Sprintf("%s: %s is not served", s.Where, s.Metric))
			continue
		}
		for _, m := range s.Matchers {
			if m.Label == "job" || m.Label == "instance" || (m.Op != "=" && m.Op != "=~") {
				continue
			}
			for _, v := range strings.Split(m.Value, "|") {
				if !literal.MatchString(v) {
					continue
				}
				if !labels[m.Label][v] {
					out = append(out, fmt.Sprintf("%s: %s{%s=%q} is not served (values: %s)", s.Where, s.Metric, m.Label, v, keys(labels[m.Label])))
				}
			}
		}
	}
	return out
}

func keys(m map[string]bool) string {
	var k []string
	for v := range m {
		k = append(k, v)
	}
	sort.Strings(k)
	return strings.Join(k, " ")
}
