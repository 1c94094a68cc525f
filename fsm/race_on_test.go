//go:build race

package fsm

// raceEnabled: the race detector slows the random-log test tenfold.
const raceEnabled = true
