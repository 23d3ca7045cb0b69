//go:build race

package ranges

// raceEnabled: the race detector slows the builders about tenfold, so the
// property tests run fewer random instances under it.
const raceEnabled = true
