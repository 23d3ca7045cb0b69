package deploy

import (
	"fmt"
	"strings"
)

// parsePromQL finds the metric selectors of a PromQL expression: enough of
// the language for the files here (selectors with matchers, functions,
// aggregations with by/without, vector matching with on/ignoring/group_*,
// ranges, subqueries, numbers and strings), not a full parser.
func parsePromQL(expr string) ([]Selector, error) {
	var out []Selector
	i, n := 0, len(expr)
	for i < n {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("%q: unclosed [", expr)
			}
			i += j + 1
		case c == '{':
			// A selector without a metric name ({__name__=~"..."}).
			_, j, err := matchers(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(expr[i+1])):
			for i < n && (isIdent(expr[i]) || expr[i] == '.') {
				i++ // 0.01, 1e3, 5m, 2^30
			}
		case isIdentStart(c):
			j := i
			for j < n && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < n && isSpace(expr[k]) {
				k++
			}
			switch {
			case k < n && expr[k] == '(' && labelLists[word]:
				// by (instance), on(instance), group_left(): label names.
				e := strings.IndexByte(expr[k:], ')')
				if e < 0 {
					return nil, fmt.Errorf("%q: unclosed %s(", expr, word)
				}
				i = k + e + 1
			case k < n && expr[k] == '(':
				i = j // a function or an aggregation
			case keywords[word]:
				i = j
			case k < n && expr[k] == '{':
				ms, e, err := matchers(expr, k)
				if err != nil {
					return nil, err
				}
				out = append(out, Selector{Metric: word, Matchers: ms})
				i = e
			default:
				out = append(out, Selector{Metric: word})
				i = j
			}
		default:
			i++
		}
	}
	return out, nil
}

// matchers parses {a="x", b=~"y|z"} starting at expr[i] == '{'.
func matchers(expr string, i int) ([]Matcher, int, error) {
	var out []Matcher
	i++
	for {
		for i < len(expr) && (isSpace(expr[i]) || expr[i] == ',') {
			i++
		}
		if i >= len(expr) {
			return nil, 0, fmt.Errorf("%q: unclosed {", expr)
		}
		if expr[i] == '}' {
			return out, i + 1, nil
		}
		j := i
		for j < len(expr) && isIdent(expr[j]) {
			j++
		}
		label := expr[i:j]
		k := j
		for k < len(expr) && strings.IndexByte("=!~", expr[k]) >= 0 {
			k++
		}
		op := expr[j:k]
		if label == "" || (op != "=" && op != "!=" && op != "=~" && op != "!~") {
			return nil, 0, fmt.Errorf("%q: bad matcher at %q", expr, expr[i:])
		}
		e, err := skipString(expr, k)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, Matcher{Label: label, Op: op, Value: expr[k+1 : e-1]})
		i = e
	}
}

func skipString(expr string, i int) (int, error) {
	if i >= len(expr) || strings.IndexByte("\"'`", expr[i]) < 0 {
		return 0, fmt.Errorf("%q: a string was expected at %d", expr, i)
	}
	q := expr[i]
	for j := i + 1; j < len(expr); j++ {
		if expr[j] == '\\' && q != '`' {
			j++
			continue
		}
		if expr[j] == q {
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%q: unclosed string", expr)
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) }

// labelLists are keywords followed by a list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// keywords are words that are not metric names when no ( follows: binary
// operators, modifiers, and the aggregations, which may be followed by
// by (...) or without (...) before their (.
var keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true, "Inf": true, "NaN": true,
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true}
