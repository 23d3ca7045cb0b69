package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/bench/httpbench"
)

// TestBenchHTTPQuick is `shoal bench http --quick` as a smoke test: every
// system (shoal, HAProxy with its origins, the plain nginx) answers every
// load with no error. It asserts nothing about speed.
func TestBenchHTTPQuick(t *testing.T) {
	needLab(t)
	if err := httpbench.CheckTools(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log strings.Builder
	rep, err := httpbench.Run(ctx, httpbench.Options{Binary: shoalBin, Quick: true, Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if len(rep.Cells) != 12 {
		t.Errorf("%d cells, want 3 systems × 2 objects × 2 modes", len(rep.Cells))
	}
	if err := rep.Errors(); err != nil {
		t.Error(err)
	}
	if _, _, err := rep.WriteFiles(t.TempDir()); err != nil {
		t.Error(err)
	}
}
