package capacity

import (
	"fmt"
	"math"
	"sync"
)

// MaxCapacity bounds any capacity or availability value.
const MaxCapacity = 1e6

// Config sets the agent's behaviour.
type Config struct {
	// Capacity is the node's configured capacity (its weight when idle).
	Capacity float64
	// LoadAware makes availability follow load; when false the node
	// always advertises its capacity (overrides still apply).
	LoadAware bool
	// MaxConnections is the number of active connections that counts as
	// full load.
	MaxConnections int
	// Alpha is the EWMA weight of a new load sample (0 < Alpha <= 1).
	Alpha float64
	// Step is the quantization step, as a fraction of Capacity: the
	// advertised availability is a multiple of Step×Capacity.
	Step float64
	// Hysteresis is how many steps the smoothed value must move away from
	// the advertised one before the advertisement changes (>= 1).
	Hysteresis int
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case !(c.Capacity >= 0 && c.Capacity <= MaxCapacity):
		return fmt.Errorf("capacity.weight: %v must be between 0 and %v", c.Capacity, MaxCapacity)
	case c.LoadAware && c.MaxConnections < 1:
		return fmt.Errorf("capacity.max_connections: %d must be at least 1", c.MaxConnections)
	case !(c.Alpha > 0 && c.Alpha <= 1):
		return fmt.Errorf("capacity.alpha: %v must be in (0, 1]", c.Alpha)
	case !(c.Step > 0 && c.Step <= 1):
		return fmt.Errorf("capacity.step: %v must be in (0, 1]", c.Step)
	case c.Hysteresis < 1 || c.Hysteresis > 100:
		return fmt.Errorf("capacity.hysteresis: %d must be between 1 and 100", c.Hysteresis)
	}
	return nil
}

// Agent tracks load and decides the advertised availability. Safe for
// concurrent use.
type Agent struct {
	mu        sync.Mutex
	cfg       Config
	load      float64 // smoothed, 0..1
	primed    bool
	advert    float64 // last advertised (load-derived) availability
	draining  bool
	override  *float64
	lastConns int
	lastCPU   float64
	ramp      float64 // slow-start factor, 0 < ramp <= 1
}

// New builds an agent advertising full capacity until the first sample.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, advert: cfg.Capacity, ramp: 1}, nil
}

// Observe feeds one load sample: active connections and CPU busy fraction
// (0..1, NaN when unknown). Load is the larger of the two utilisations.
func (a *Agent) Observe(activeConns int, cpuBusy float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastConns, a.lastCPU = activeConns, cpuBusy
	if !a.cfg.LoadAware {
		return
	}
	l := float64(activeConns) / float64(a.cfg.MaxConnections)
	if !math.IsNaN(cpuBusy) && cpuBusy > l {
		l = cpuBusy
	}
	l = math.Min(math.Max(l, 0), 1)
	if !a.primed {
		a.load, a.primed = l, true
	} else {
		a.load += a.cfg.Alpha * (l - a.load)
	}
	c := a.cfg.Capacity
	step := a.cfg.Step * c
	if step <= 0 {
		a.advert = c
		return
	}
	target := c * (1 - a.load)
	// Move the advertisement only when the smoothed value is Hysteresis
	// steps away, then snap it to the step grid.
	if math.Abs(target-a.advert) >= float64(a.cfg.Hysteresis)*step-1e-9 {
		a.advert = math.Min(c, math.Max(0, math.Round(target/step)*step))
	}
}

// SetRamp sets the slow-start factor (clamped into (0, 1]): availability
// is scaled by it. The caller quantizes it so tables do not churn.
func (a *Agent) SetRamp(f float64) {
	if !(f > 0) {
		f = 1e-3
	}
	a.mu.Lock()
	a.ramp = math.Min(f, 1)
	a.mu.Unlock()
}

// Drain sets availability to zero (true) or lifts the drain (false).
func (a *Agent) Drain(on bool) {
	a.mu.Lock()
	a.draining = on
	a.mu.Unlock()
}

// SetWeight overrides the availability with w; nil removes the override.
func (a *Agent) SetWeight(w *float64) error {
	if w != nil && !(*w >= 0 && *w <= MaxCapacity) {
		return fmt.Errorf("weight %v must be between 0 and %v", *w, MaxCapacity)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w == nil {
		a.override = nil
		return nil
	}
	v := *w
	a.override = &v
	return nil
}

// State is what the agent reports.
type State struct {
	Capacity     float64  `json:"capacity"`
	Availability float64  `json:"availability"`
	Load         float64  `json:"load"`
	Draining     bool     `json:"draining"`
	Override     *float64 `json:"override,omitempty"`
	LoadAware    bool     `json:"load_aware"`
	Ramp         float64  `json:"slow_start_factor"`
	ActiveConns  int      `json:"active_connections"`
	CPUBusy      float64  `json:"cpu_busy"`
}

// Availability is what the node advertises now.
func (a *Agent) Availability() float64 { return a.State().Availability }

// State returns the agent's inputs and output.
func (a *Agent) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := State{Capacity: a.cfg.Capacity, Load: a.load, Draining: a.draining, Override: a.override,
		LoadAware: a.cfg.LoadAware, ActiveConns: a.lastConns, CPUBusy: a.lastCPU, Ramp: a.ramp}
	switch {
	case a.draining:
		s.Availability = 0
	case a.override != nil:
		s.Availability = *a.override
	case a.cfg.LoadAware:
		s.Availability = a.advert
	default:
		s.Availability = a.cfg.Capacity
	}
	if !s.Draining && a.override == nil {
		s.Availability *= a.ramp
	}
	if math.IsNaN(s.CPUBusy) {
		s.CPUBusy = -1
	}
	return s
}
