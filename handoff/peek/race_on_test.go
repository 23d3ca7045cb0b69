//go:build race

package peek

const raceEnabled = true
