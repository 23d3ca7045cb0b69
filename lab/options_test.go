package lab

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseWeights(t *testing.T) {
	good := []struct {
		s     string
		nodes int
		want  []float64
	}{
		{"1,2,1", 3, []float64{1, 2, 1}},
		{"0.5", 1, []float64{0.5}},
		{" 1 , 2.5 ", 2, []float64{1, 2.5}},
	}
	for _, g := range good {
		got, err := ParseWeights(g.s, g.nodes)
		if err != nil || !slices.Equal(got, g.want) {
			t.Errorf("ParseWeights(%q, %d) = %v, %v; want %v", g.s, g.nodes, got, err, g.want)
		}
	}
	bad := []struct {
		s     string
		nodes int
		why   string
	}{
		{"1,2", 3, "2 given for 3"},
		{"1,2,3,4", 3, "4 given for 3"},
		{"", 1, "not a number"},
		{"1,x", 2, "not a number"},
		{"1,0", 2, "above 0"},
		{"-1", 1, "above 0"},
		{"NaN", 1, "finite"},
		{"Inf", 1, "finite"},
		{"1e7", 1, "at most"},
	}
	for _, b := range bad {
		if _, err := ParseWeights(b.s, b.nodes); err == nil || !strings.Contains(err.Error(), b.why) {
			t.Errorf("ParseWeights(%q, %d) error = %v; want one mentioning %q", b.s, b.nodes, err, b.why)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := []Options{
		{},
		{Nodes: 1},
		{Nodes: 16},
		{Nodes: 2, Weights: []float64{1, 3}},
		{Nodes: 2, ExtraBuckets: map[int]string{2: "0-99,512"}},
	}
	for _, o := range ok {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := []struct {
		o   Options
		why string
	}{
		{Options{Nodes: 17}, "nodes"},
		{Options{Nodes: -1}, "nodes"},
		{Options{Nodes: 2, Weights: []float64{1}}, "1 given for 2"},
		{Options{Weights: []float64{1, 1}}, "2 given for 3"}, // default 3 nodes
		{Options{Nodes: 2, Weights: []float64{1, math.NaN()}}, "weights[1]"},
		{Options{Nodes: 2, Weights: []float64{1, math.Inf(1)}}, "weights[1]"},
		{Options{Nodes: 1, Weights: []float64{0}}, "weights[0]"},
		{Options{Nodes: 2, ExtraBuckets: map[int]string{3: "1"}}, "node index 3"},
		{Options{Nodes: 2, ExtraBuckets: map[int]string{1: "70000"}}, "extra buckets of n1"},
		{Options{MemoryMB: -1}, "memory"},
	}
	for _, b := range bad {
		if err := b.o.Validate(); err == nil || !strings.Contains(err.Error(), b.why) {
			t.Errorf("%+v: error %v; want one mentioning %q", b.o, err, b.why)
		}
	}
}

func TestParseWhere(t *testing.T) {
	for where, ns := range map[string]string{"client": "shoal-client", "br": "shoal-br", "n1": "shoal-n1", "n16": "shoal-n16"} {
		if got, err := ParseWhere(where); err != nil || got != ns {
			t.Errorf("ParseWhere(%q) = %q, %v; want %q", where, got, err, ns)
		}
	}
	for _, where := range []string{"", "n0", "n17", "n01", "N1", "node1", "client2", "shoal-client", "n1 ", "../x"} {
		if _, err := ParseWhere(where); !errors.Is(err, ErrUnknownPlace) {
			t.Errorf("ParseWhere(%q) = %v; want ErrUnknownPlace", where, err)
		}
	}
}

func TestNames(t *testing.T) {
	if NodeIP(1) != "198.18.0.101" || NodeIP(16) != "198.18.0.116" || NodeID(3) != "n3" {
		t.Error("node naming changed")
	}
	if NodeMAC(1) != "02:00:c6:12:00:65" {
		t.Errorf("NodeMAC(1) = %s", NodeMAC(1))
	}
	if k, ok := nodeIndex("n12"); !ok || k != 12 {
		t.Error("nodeIndex(n12)")
	}
	for _, id := range []string{"n0", "n17", "n01", "x1", "n"} {
		if _, ok := nodeIndex(id); ok {
			t.Errorf("nodeIndex(%q) accepted", id)
		}
	}
}

func TestExecBadPlace(t *testing.T) {
	err := Exec(context.Background(), "nowhere", "true").Run()
	if !errors.Is(err, ErrUnknownPlace) {
		t.Errorf("Exec in a bad place: %v; want ErrUnknownPlace", err)
	}
	if err := Exec(context.Background(), "client").Run(); err == nil {
		t.Error("Exec without a command ran")
	}
}

func TestKillUnknown(t *testing.T) {
	for _, id := range []string{"client", "n0", "bogus"} {
		if err := Kill(id); !errors.Is(err, ErrUnknownPlace) {
			t.Errorf("Kill(%q) = %v; want ErrUnknownPlace", id, err)
		}
	}
}

func TestParseReplyPaths(t *testing.T) {
	var o Options
	if err := ParseReplyPaths("tap", 3, &o); err != nil || o.ReplyPath != "tap" || o.ReplyPaths != nil {
		t.Fatalf("tap: %+v %v", o, err)
	}
	o = Options{}
	if err := ParseReplyPaths("kernel, tap,kernel,tap", 4, &o); err != nil || o.ReplyPaths[2] != "tap" || o.ReplyPaths[3] != "kernel" || len(o.ReplyPaths) != 4 {
		t.Fatalf("per node: %+v %v", o, err)
	}
	for _, bad := range []string{"fast", "kernel,tap", "kernel,tap,warp"} {
		if err := ParseReplyPaths(bad, 3, &Options{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := (&Options{Nodes: 2, ReplyPaths: map[int]string{3: "tap"}}).Validate(); err == nil || !strings.Contains(err.Error(), "reply paths") {
		t.Errorf("node index 3 of 2: %v", err)
	}
}
