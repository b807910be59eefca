package idgen

import "time"

// Clock is the generators' time source; tests replace it to roll time back.
type Clock interface {
	// Now returns the wall-clock time.
	Now() time.Time
	// Sleep pauses for d.
	Sleep(d time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time        { return time.Now() }
func (realClock) Sleep(d time.Duration) { time.Sleep(d) }
