package daemon

import "time"

// SetIdleTimeout sets the idle timeout of daemons started after it, until
// restore is called.
func SetIdleTimeout(d time.Duration) (restore func()) {
	old := idleTimeout
	idleTimeout = d
	return func() { idleTimeout = old }
}

// IdleConnsClosedAtStop is how many HTTP/2 connections the daemon's
// graceful stop closed for being idle (connTracker.closeIdle).
func (d *Daemon) IdleConnsClosedAtStop() int64 { return d.conns.closed.Load() }
