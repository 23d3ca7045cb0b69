// Package capacity computes the availability a node advertises: its
// configured capacity times one minus its load, smoothed and quantized so
// that range tables change only when a share really moves.
//
// Contract: Availability is a pure function of the agent's inputs (the
// configured capacity, the overrides, and the load samples given to
// Observe); the agent reads no clock and no system file itself. An operator
// override (Drain, SetWeight) takes effect at once and bypasses smoothing.
package capacity
