package idgen

import (
	"runtime"
	"time"
)

// Clock is the generators' time source; tests replace it to roll time back.
type Clock interface {
	// Now returns the wall-clock time.
	Now() time.Time
	// Sleep pauses for d.
	Sleep(d time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Sleep pauses for d. A pause under a millisecond yields the processor
// until d has passed instead of sleeping: the Go runtime rounds an idle
// timer up to a whole millisecond on Linux, so a generator that filled a
// millisecond's sequence would otherwise miss most of the next one.
func (realClock) Sleep(d time.Duration) {
	if d >= time.Millisecond {
		time.Sleep(d)
		return
	}
	for end := time.Now().Add(d); time.Now().Before(end); {
		runtime.Gosched()
	}
}
