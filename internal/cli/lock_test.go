package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

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

// `lock ls` showed one token per lock, the first holder's: a read-write
// lock or a semaphore held by several grants listed only one of them. It
// now shows every holder's token (the HOLDERS count says how many), and
// --json lists every holder.
func TestLockLsShowsEveryHoldersToken(t *testing.T) {
	addr := startMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Endpoints: []string{addr}})
	require.NoError(t, err)
	defer cl.Close()
	sess, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	want := map[string][]uint64{}
	for i, owner := range []string{"a", "b", "c"} {
		for _, claim := range []*client.LockClaim{
			{Name: "ls-sem", Kind: client.KindSemaphore, Permits: 1, Capacity: 5},
			{Name: "ls-rw", Kind: client.KindRWLock, Mode: client.ModeShared},
		} {
			if claim.GetKind() == client.KindRWLock && i == 2 {
				continue // two readers
			}
			g, err := cl.AcquireLocks(ctx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{Wait: true})
			require.NoError(t, err)
			want[claim.GetName()] = append(want[claim.GetName()], g.Token)
		}
	}
	out, errOut, err := run(t, "lock", "ls", "ls-", "--endpoints", addr)
	require.NoError(t, err, errOut)
	for name, tokens := range want {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, name+" ") {
				line = l
			}
		}
		require.NotEmpty(t, line, "no line for %s in:\n%s", name, out)
		fields := strings.Fields(line)
		require.Equal(t, fmt.Sprint(len(tokens)), fields[2], "holders of %s: %s", name, line)
		for _, tok := range tokens {
			require.Contains(t, strings.Split(fields[len(fields)-1], ","), fmt.Sprint(tok), "%s: token %d missing from %q", name, tok, line)
		}
	}
	out, errOut, err = run(t, "lock", "ls", "ls-", "--json", "--endpoints", addr)
	require.NoError(t, err, errOut)
	var locks []struct {
		Name    string `json:"name"`
		Holders []struct {
			Token uint64 `json:"token"`
		} `json:"holders"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &locks), out)
	require.Len(t, locks, 2)
	for _, l := range locks {
		var got []uint64
		for _, h := range l.Holders {
			got = append(got, h.Token)
		}
		require.ElementsMatch(t, want[l.Name], got, l.Name)
	}
}
