package deploy

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed grafana/shoal-dashboard.json prometheus/shoal-alerts.yaml systemd/shoal@.service
var files embed.FS

// Matcher is one label matcher of a selector: Label Op "Value".
type Matcher struct {
	Label, Op, Value string
}

// Selector is a metric named by an expression, with its matchers.
type Selector struct {
	Metric   string
	Matchers []Matcher
	// Where names the file and the alert or panel.
	Where string
}

// Selectors returns every metric selector of the dashboard's queries and
// the alert rules' expressions.
func Selectors() ([]Selector, error) {
	var out []Selector
	add := func(where, expr string) error {
		ss, err := parsePromQL(expr)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for _, s := range ss {
			s.Where = where
			out = append(out, s)
		}
		return nil
	}
	exprs, err := alertExprs()
	if err != nil {
		return nil, err
	}
	for _, e := range exprs {
		if err := add(e[0], e[1]); err != nil {
			return nil, err
		}
	}
	exprs, err = dashboardExprs()
	if err != nil {
		return nil, err
	}
	for _, e := range exprs {
		if err := add(e[0], e[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Rules is the alert rules file as Prometheus reads it (the part we use).
type Rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []Rule `yaml:"rules"`
	} `yaml:"groups"`
}

// Rule is one alerting rule.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// LoadRules parses the alert rules; unknown fields are errors.
func LoadRules() (*Rules, error) {
	raw, err := files.ReadFile("prometheus/shoal-alerts.yaml")
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	var r Rules
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("prometheus/shoal-alerts.yaml: %w", err)
	}
	return &r, nil
}

func alertExprs() ([][2]string, error) {
	r, err := LoadRules()
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			out = append(out, [2]string{"alert " + rule.Alert, rule.Expr})
		}
	}
	return out, nil
}

// Dashboard is the part of a Grafana dashboard that names queries.
type Dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []Panel `json:"panels"`
	// Templating holds the variables; query variables name metrics too.
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

// LoadDashboard parses the Grafana dashboard.
func LoadDashboard() (*Dashboard, error) {
	raw, err := files.ReadFile("grafana/shoal-dashboard.json")
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("grafana/shoal-dashboard.json: %w", err)
	}
	return &d, nil
}

func dashboardExprs() ([][2]string, error) {
	d, err := LoadDashboard()
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, [2]string{fmt.Sprintf("panel %q %s", p.Title, t.RefID), t.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// label_values(SELECTOR, label): the selector names a metric.
		def := strings.TrimSuffix(strings.TrimPrefix(v.Definition, "label_values("), ")")
		if i := strings.LastIndexByte(def, ','); i > 0 {
			def = def[:i]
		}
		out = append(out, [2]string{"variable " + v.Name, def})
	}
	return out, nil
}
