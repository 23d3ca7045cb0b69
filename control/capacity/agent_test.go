package capacity

import (
	"math"
	"testing"
)

func cfg() Config {
	return Config{Capacity: 10, LoadAware: true, MaxConnections: 100, Alpha: 1, Step: 0.1, Hysteresis: 2}
}

func TestStaticIgnoresLoad(t *testing.T) {
	c := cfg()
	c.LoadAware = false
	a, _ := New(c)
	a.Observe(100, 1)
	if a.Availability() != 10 {
		t.Fatal(a.Availability())
	}
}

func TestQuantizedWithHysteresis(t *testing.T) {
	a, _ := New(cfg())
	a.Observe(10, 0) // load 0.1: one step, under the hysteresis
	if got := a.Availability(); got != 10 {
		t.Fatalf("moved on one step: %v", got)
	}
	a.Observe(25, 0) // load 0.25: 2.5 steps away → snap to 7.5 rounds to grid
	if got := a.Availability(); math.Abs(got-8) > 1e-9 && math.Abs(got-7) > 1e-9 {
		t.Fatalf("availability %v, want on the 1.0 grid near 7.5", got)
	}
	before := a.Availability()
	a.Observe(30, 0) // 7.0: within hysteresis of the advert
	if a.Availability() != before {
		t.Fatalf("churned: %v -> %v", before, a.Availability())
	}
	a.Observe(0, math.NaN())
	if a.Availability() != 10 {
		t.Fatalf("recovered to %v", a.Availability())
	}
}

func TestCPUCountsAsLoad(t *testing.T) {
	a, _ := New(cfg())
	a.Observe(0, 0.8)
	if got := a.Availability(); math.Abs(got-2) > 1e-9 {
		t.Fatalf("%v", got)
	}
}

func TestSmoothing(t *testing.T) {
	c := cfg()
	c.Alpha = 0.5
	a, _ := New(c)
	a.Observe(0, 0)
	a.Observe(100, 0) // smoothed load 0.5
	if got := a.Availability(); math.Abs(got-5) > 1e-9 {
		t.Fatalf("%v", got)
	}
}

func TestOverrides(t *testing.T) {
	a, _ := New(cfg())
	w := 3.0
	a.SetWeight(&w)
	if a.Availability() != 3 {
		t.Fatal(a.Availability())
	}
	a.Drain(true)
	if a.Availability() != 0 {
		t.Fatal("drain")
	}
	a.Drain(false)
	a.SetWeight(nil)
	if a.Availability() != 10 {
		t.Fatal(a.Availability())
	}
	bad := math.NaN()
	if a.SetWeight(&bad) == nil {
		t.Fatal("NaN weight accepted")
	}
}

func TestValidate(t *testing.T) {
	for _, f := range []func(*Config){
		func(c *Config) { c.Capacity = -1 },
		func(c *Config) { c.Capacity = math.Inf(1) },
		func(c *Config) { c.MaxConnections = 0 },
		func(c *Config) { c.Alpha = 0 },
		func(c *Config) { c.Step = 2 },
		func(c *Config) { c.Hysteresis = 0 },
	} {
		c := cfg()
		f(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
