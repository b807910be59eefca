package daemon

import "time"

// SetIdleTimeout sets the idle timeout of daemons started after it, until
// restore is called.
func SetIdleTimeout(d time.Duration) (restore func()) {
	old := idleTimeout
	idleTimeout = d
	return func() { idleTimeout = old }
}
