package cli

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

// `lock release` defined its own --token (the grant's fencing token, a
// uint), which shadowed the global bearer --token: on a cluster with
// --auth-token, `concord --token SECRET lock release NAME --force` failed
// to parse "SECRET", and the bearer token could only come from
// CONCORD_TOKEN. The grant's token is now --lock-token, and the global
// --token reaches the cluster.
func TestLockReleaseTakesTheBearerTokenAndLockToken(t *testing.T) {
	addr := startMember(t, "--auth-token", "s3cret")
	_, _, err := run(t, "lock", "release", "x", "--force", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrUnauthenticated, "the member does not require the token")
	// Authenticated, the release reaches the cluster and finds the lock free.
	_, _, err = run(t, "--token", "s3cret", "lock", "release", "x", "--force", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrNotHeld)
	_, _, err = run(t, "--token", "s3cret", "lock", "release", "x", "--force", "--lock-token", "7", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrNotHeld)
}

// `lock hold` names its session "lock-hold NAME@host pid N", and a session
// name is at most 256 bytes: a lock name of more than about 220 bytes,
// valid up to --max-key-bytes, was refused with "session name is 5023
// bytes; the limit is 256", a name the user never gave. The label is now
// cut to fit.
func TestLockHoldTakesALongLockName(t *testing.T) {
	addr := startMember(t)
	for _, name := range []string{strings.Repeat("n", 4000), strings.Repeat("é", 200)} {
		out, errOut, err := run(t, "lock", "hold", name, "--endpoints", addr, "--", "true")
		require.NoError(t, err, "lock hold of a %d-byte name: %s%s", len(name), out, errOut)
		out, errOut, err = run(t, "sem", "hold", name+"-sem", "--permits", "2", "--endpoints", addr, "--", "true")
		require.NoError(t, err, "sem hold of a %d-byte name: %s%s", len(name), out, errOut)
	}
}

// A SIGTERM (or SIGINT, SIGHUP) that reached `lock hold` while it was
// still connecting ended it with exit 1 and "unavailable ... is concord
// running?", where a stopped hold exits 128+n. It now exits 143 for
// SIGTERM there too.
func TestLockHoldInterruptedWhileConnectingExitsWithTheSignal(t *testing.T) {
	// A member that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, _, err := run(t, "lock", "hold", "x", "--endpoints", ln.Addr().String(), "--timeout", "20s", "--", "true")
		done <- err
	}()
	select {
	case c := <-accepted: // past signal.Notify: the hold is connecting
		defer c.Close()
	case err := <-done:
		t.Fatalf("lock hold ended before connecting: %v", err)
	}
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	err = <-done
	var ee *ExitError
	require.ErrorAs(t, err, &ee, "%v", err)
	require.Equal(t, 128+int(syscall.SIGTERM), ee.Code, "%v", err)
}
