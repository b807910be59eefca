package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stop stops p gracefully with SIGTERM, as an operator's rolling restart
// does, and returns how long it took and its exit code; a process still
// running after within is killed, and the test fails.
func (c *cluster) stop(p *proc, within time.Duration) (time.Duration, int) {
	c.t.Helper()
	start := time.Now()
	require.NoError(c.t, p.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(within):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-done
		c.t.Fatalf("%s still running %s after SIGTERM (log %s.log)", p.name, within, p.dir)
	}
	took := time.Since(start)
	p.cmd = nil
	p.log.Close()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	return took, code
}

// state returns p's applied index and state hash (/debug/hash).
func state(p *proc) (uint64, string, error) {
	resp, err := http.Get("http://" + p.client + "/debug/hash")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("/debug/hash: %s", resp.Status)
	}
	var h struct {
		AppliedIndex uint64 `json:"applied_index"`
		Hash         string `json:"hash"`
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h.AppliedIndex, h.Hash, err
}

// TestRollingRestartIsInvisibleToSDKWriters stops the members of a
// 3-member cluster with SIGTERM and restarts them one after the other,
// the leader first, as a rolling restart or upgrade does, while SDK
// clients write. Every stop exits 0 (a leader hands its leadership over
// first), every write is acknowledged (the SDK moves to another member
// and sends a write cut by the stop again under its request ID), no
// acknowledged write is lost, and the members converge.
func TestRollingRestartIsInvisibleToSDKWriters(t *testing.T) {
	c := startCluster(t, 3)
	cl := newClient(t, c.endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var (
		mu     sync.Mutex
		acked  = map[string]uint64{}
		failed error
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				key := fmt.Sprintf("rolling/%d/%05d", w, i)
				res, err := cl.Put(ctx, key, []byte(key))
				mu.Lock()
				if err != nil {
					if failed == nil {
						failed = fmt.Errorf("put %s: %w", key, err)
					}
					mu.Unlock()
					return
				}
				acked[key] = res.Revision
				mu.Unlock()
			}
		}()
	}
	// writesGoOn waits until n more writes are acknowledged.
	writesGoOn := func(n int, why string) {
		t.Helper()
		target := count() + n
		require.Eventually(t, func() bool { return count() >= target }, 30*time.Second, 10*time.Millisecond,
			"writes stopped (%s): %d acknowledged, error %v", why, count(), failed)
	}

	writesGoOn(200, "before the restart")
	leader := c.leader(cl)
	order := []*proc{leader}
	for _, p := range c.procs {
		if p != leader {
			order = append(order, p)
		}
	}
	for _, p := range order {
		took, code := c.stop(p, 30*time.Second)
		require.Zero(t, code, "the graceful stop of %s exited %d (log %s.log)", p.name, code, p.dir)
		t.Logf("%s stopped gracefully in %s", p.name, took.Round(time.Millisecond))
		writesGoOn(200, p.name+" down")
		c.start(p)
		// Caught up before the next member stops: with two down there
		// would be no quorum.
		var others []*proc
		for _, q := range c.procs {
			if q != p {
				others = append(others, q)
			}
		}
		require.Eventually(t, func() bool {
			want, _, err := state(others[0])
			if err != nil {
				return false
			}
			got, _, err := state(p)
			return err == nil && got >= want
		}, 30*time.Second, 50*time.Millisecond, "%s did not catch up after its restart", p.name)
		writesGoOn(200, p.name+" back")
	}
	close(quit)
	wg.Wait()
	require.NoError(t, failed, "a write failed during the rolling restart")
	t.Logf("%d writes acknowledged across the rolling restart", len(acked))

	for key, rev := range acked {
		kv, err := cl.Get(ctx, key)
		require.NoError(t, err, "acknowledged write %s lost", key)
		require.Equal(t, rev, kv.GetModRevision(), "%s", key)
	}
	require.Eventually(t, func() bool {
		var states []string
		for _, p := range c.procs {
			a, h, err := state(p)
			if err != nil {
				return false
			}
			states = append(states, fmt.Sprint(a, h))
		}
		return states[0] == states[1] && states[1] == states[2]
	}, 20*time.Second, 100*time.Millisecond, "the members did not converge")
}
