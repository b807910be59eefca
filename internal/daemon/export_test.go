package daemon

import "time"

// SetIdleTimeout sets the idle timeout of daemons started after it, until
// restore is called.
func SetIdleTimeout(d time.Duration) (restore func()) {
	old := idleTimeout
	idleTimeout = d
	return func() { idleTimeout = old }
}

// SetPings sets the HTTP/2 ping interval and timeout of daemons started
// after it, until restore is called.
func SetPings(interval, timeout time.Duration) (restore func()) {
	oldI, oldT := pingInterval, pingTimeout
	pingInterval, pingTimeout = interval, timeout
	return func() { pingInterval, pingTimeout = oldI, oldT }
}
