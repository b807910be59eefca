package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

// TestLockHoldExcludes runs 20 `concord lock hold` processes at once against
// a 3-member cluster. Each command checks that nobody else is inside (an
// atomic mkdir), appends its fencing token to a shared file, and leaves.
// The file must show no overlap and strictly increasing tokens.
func TestLockHoldExcludes(t *testing.T) {
	c := startCluster(t, 3)
	newClient(t, c.endpoints())
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := fmt.Sprintf(`mkdir %[1]q/inside 2>/dev/null || echo OVERLAP >> %[2]q
echo "$CONCORD_LOCK_TOKEN" >> %[2]q
sleep 0.02
rmdir %[1]q/inside`, dir, log)
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")

	const holders = 20
	var wg sync.WaitGroup
	codes := make([]int, holders)
	outs := make([]string, holders)
	for i := 0; i < holders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(binary, "lock", "hold", "e2e-lock", eps, "--wait", "60s", "--", "sh", "-c", script)
			out, err := cmd.CombinedOutput()
			outs[i] = string(out)
			if ee, ok := err.(*exec.ExitError); ok {
				codes[i] = ee.ExitCode()
			} else if err != nil {
				codes[i] = -1
			}
		}()
	}
	wg.Wait()
	for i := range codes {
		require.Zero(t, codes[i], "holder %d: %s", i, outs[i])
	}
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	lines := strings.Fields(string(b))
	require.Len(t, lines, holders)
	var last uint64
	for _, l := range lines {
		require.NotEqual(t, "OVERLAP", l, "two holders were inside at once")
		tok, err := strconv.ParseUint(l, 10, 64)
		require.NoError(t, err)
		require.Greater(t, tok, last, "tokens must increase")
		last = tok
	}
}

// TestLockHoldExitCodes checks the documented codes: the command's own code,
// 4 when the lock cannot be taken in time, 5 when it is lost mid-run.
func TestLockHoldExitCodes(t *testing.T) {
	c := startCluster(t, 1)
	newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")

	_, code := run(t, "lock", "hold", "codes", eps, "--", "sh", "-c", "exit 7")
	require.Equal(t, 7, code)

	holder := exec.Command(binary, "lock", "hold", "codes", eps, "--", "sleep", "5")
	require.NoError(t, holder.Start())
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	require.Eventually(t, func() bool {
		out, _ := run(t, "lock", "inspect", "codes", eps, "--json")
		return strings.Contains(out, `"token"`)
	}, 10*time.Second, 50*time.Millisecond)
	out, code := run(t, "lock", "hold", "codes", eps, "--wait", "300ms", "--", "true")
	require.Equal(t, ExitNotAcquiredForTest, code, out)

	out, code = run(t, "lock", "hold", "lost", eps, "--hold", "500ms", "--grace", "1s", "--", "sleep", "10")
	require.Equal(t, ExitLockLostForTest, code, out)
	require.Contains(t, out, "hold time")
}

// Mirrors of the CLI's exit codes, kept here so the test reads as the
// documentation does.
const (
	ExitNotAcquiredForTest = 4
	ExitLockLostForTest    = 5
)

// TestLockHoldEndings checks the less happy endings: a command killed by a
// signal, concord itself interrupted while the command ignores SIGTERM, a
// lock force-released shortly before the command finished, bad flags.
func TestLockHoldEndings(t *testing.T) {
	c := startCluster(t, 1)
	cl := newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")

	out, code := run(t, "lock", "hold", "sig", eps, "--", "sh", "-c", "kill -9 $$")
	require.Equal(t, 128+9, code, "a command killed by SIGKILL ends like it does in a shell: %s", out)
	require.Contains(t, out, "killed by SIGKILL")

	// Interrupted while the command runs and ignores SIGTERM: SIGKILL
	// after --grace, the lock released, the code of concord's signal.
	hold := exec.Command(binary, "lock", "hold", "intr", eps, "--grace", "500ms", "--", "sh", "-c", `trap "" TERM; sleep 30`)
	require.NoError(t, hold.Start())
	t.Cleanup(func() { _ = hold.Process.Kill() })
	waitHeld(t, eps, "intr")
	require.NoError(t, hold.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- hold.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, 128+int(syscall.SIGTERM), ee.ExitCode())
	case <-time.After(10 * time.Second):
		t.Fatal("concord did not end 10 s after SIGTERM: it waits for a command that ignores SIGTERM")
	}
	info, _, err := cl.InspectLock(t.Context(), "intr")
	require.NoError(t, err)
	require.Empty(t, info.GetHolders(), "the lock is released")

	// Force-released while the command runs; it finishes before the next
	// keep-alive would tell concord (TTL 9 s: every 3 s).
	late := exec.Command(binary, "lock", "hold", "late", eps, "--ttl", "9s", "--", "sleep", "1.5")
	var lateOut strings.Builder
	late.Stdout, late.Stderr = &lateOut, &lateOut
	require.NoError(t, late.Start())
	waitHeld(t, eps, "late")
	out, code = run(t, "lock", "release", "late", eps, "--force", "--reason", "test")
	require.Equal(t, 0, code, out)
	err = late.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, lateOut.String())
	require.Equal(t, ExitLockLostForTest, ee.ExitCode(), "the lock was lost while the command ran: %s", lateOut.String())
	require.Contains(t, lateOut.String(), "had ended before its release (force-released")

	// Interrupted while waiting: the code of the signal, not 4.
	holder := exec.Command(binary, "lock", "hold", "busy", eps, "--", "sleep", "30")
	require.NoError(t, holder.Start())
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	waitHeld(t, eps, "busy")
	waiter := exec.Command(binary, "lock", "hold", "busy", eps, "--", "true")
	require.NoError(t, waiter.Start())
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(t.Context(), "busy")
		return err == nil && len(info.GetWaiters()) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, waiter.Process.Signal(os.Interrupt))
	err = waiter.Wait()
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 128+int(syscall.SIGINT), ee.ExitCode())

	// Bad flags are refused before anything runs, and are not "not
	// acquired in time" (4), which a script would retry.
	for _, args := range [][]string{
		{"sem", "hold", "s", eps, "--permits", "2", "--take", "3", "--", "true"},
		{"sem", "hold", "s", eps, "--permits", "2", "--take", "0", "--", "true"},
		{"sem", "hold", "s", eps, "--permits", "-2", "--", "true"},
		{"lock", "hold", "m", eps, "--wait", "-1s", "--", "true"},
		{"lock", "hold", "m", eps, "--grace", "-1s", "--", "true"},
		{"lock", "hold", "m", eps, "--hold", "-1s", "--", "true"},
	} {
		out, code := run(t, args...)
		require.Equal(t, 1, code, "%v: %s", args, out)
		require.Contains(t, out, "invalid argument", "%v", args)
	}
}

func waitHeld(t *testing.T, eps, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		out, _ := run(t, "lock", "inspect", name, eps, "--json")
		return strings.Contains(out, `"token"`)
	}, 10*time.Second, 50*time.Millisecond)
}

// TestCLIEscapesControlCharacters: names, owners and keys may hold any
// byte; the CLI's human output quotes those that would drive the terminal
// or break its tables, and --json carries them exactly.
func TestCLIEscapesControlCharacters(t *testing.T) {
	c := startCluster(t, 1)
	cl := newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	ctx := context.Background()
	const name = "evil\n\x1b[31mname"
	sess, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	defer sess.Close(context.Background())
	_, err = cl.AcquireLocks(ctx, sess, "owner\tx", []*client.LockClaim{{Name: name, Kind: client.KindMutex}}, client.AcquireOptions{})
	require.NoError(t, err)
	_, err = cl.Put(ctx, name, []byte("v\x1b[2J"))
	require.NoError(t, err)

	for _, args := range [][]string{{"lock", "ls"}, {"lock", "inspect", name}, {"kv", "ls", "evil"}} {
		out, code := run(t, append(args, eps)...)
		require.Zero(t, code, out)
		require.NotContains(t, out, "\x1b", "%v printed an escape byte: %q", args, out)
		require.Contains(t, out, `"evil\n\x1b[31mname"`, "%v: %q", args, out)
	}
	out, _ := run(t, "lock", "inspect", name, eps)
	require.Contains(t, out, `"owner\tx"`, "%q", out)

	out, code := run(t, "lock", "inspect", name, eps, "--json")
	require.Zero(t, code, out)
	var inspected struct {
		Lock struct {
			Name    string `json:"name"`
			Holders []struct {
				Owner string `json:"owner"`
			} `json:"holders"`
		} `json:"lock"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &inspected))
	info := inspected.Lock
	require.Equal(t, name, info.Name, "--json keeps the exact bytes")
	require.Equal(t, "owner\tx", info.Holders[0].Owner)
}

// TestLockHoldStopsEverythingTheCommandStarted: off a terminal (stdin is
// /dev/null, as under cron, systemd or nohup) the command runs in a
// process group of its own, so a lost lock stops what it started too.
func TestLockHoldStopsEverythingTheCommandStarted(t *testing.T) {
	c := startCluster(t, 1)
	newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	pidfile := filepath.Join(t.TempDir(), "pid")
	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer devnull.Close()
	cmd := exec.Command(binary, "lock", "hold", "pg", eps, "--hold", "1s", "--grace", "500ms", "--",
		"sh", "-c", fmt.Sprintf("sleep 60 & echo $! > %q; wait", pidfile))
	// Output to a file: a pipe would stay open, and Wait with it, as long
	// as the background sleep lives.
	outFile, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer outFile.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, outFile, outFile
	err = cmd.Run()
	out, _ := os.ReadFile(outFile.Name())
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, string(out))
	require.Equal(t, ExitLockLostForTest, ee.ExitCode(), "%s", out)
	b, err := os.ReadFile(pidfile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	require.Eventually(t, func() bool {
		return syscall.Kill(pid, 0) != nil // gone (or a zombie reaped by init)
	}, 5*time.Second, 20*time.Millisecond, "the command's background sleep (pid %d) outlived the lost lock", pid)
}

// TestLockHoldEndsPromptlyWithoutQuorum: when the cluster loses its quorum
// the lock is lost one TTL after the last confirmed keep-alive; concord
// then stops the command and exits at once, without waiting --timeout to
// revoke a session the cluster cannot end.
func TestLockHoldEndsPromptlyWithoutQuorum(t *testing.T) {
	c := startCluster(t, 3)
	newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	hold := exec.Command(binary, "lock", "hold", "nq", eps, "--ttl", "2s", "--grace", "200ms", "--timeout", "20s", "--", "sleep", "60")
	var out strings.Builder
	hold.Stdout, hold.Stderr = &out, &out
	require.NoError(t, hold.Start())
	t.Cleanup(func() { _ = hold.Process.Kill() })
	waitHeld(t, eps, "nq")
	c.kill(c.procs[0])
	c.kill(c.procs[1])
	killed := time.Now()
	done := make(chan error, 1)
	go func() { done <- hold.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, out.String())
		require.Equal(t, ExitLockLostForTest, ee.ExitCode(), "%s", out.String())
		// One TTL and the grace, with room for a slow machine; --timeout
		// (20 s) is not waited for.
		require.Less(t, time.Since(killed), 10*time.Second, "%s", out.String())
	case <-time.After(40 * time.Second):
		t.Fatalf("concord did not end 40 s after the quorum was lost: %s", out.String())
	}
}

// TestSemHoldSharesPermits runs `concord sem hold` for real: two commands
// taking one permit each of a semaphore of two run together, each with the
// fencing token of its grant in CONCORD_LOCK_TOKEN; a third cannot get in
// within --wait (4), one claiming another capacity is refused (1, not 4),
// and the permits are back once the commands end.
func TestSemHoldSharesPermits(t *testing.T) {
	c := startCluster(t, 1)
	cl := newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	var holders []*exec.Cmd
	for i := range 2 {
		tokenFile := filepath.Join(dir, fmt.Sprintf("token%d", i))
		script := fmt.Sprintf(`echo "$CONCORD_LOCK_NAME $CONCORD_LOCK_TOKEN" > %[1]q.tmp && mv %[1]q.tmp %[1]q
while [ ! -e %[2]q ]; do sleep 0.05; done`, tokenFile, release)
		cmd := exec.Command(binary, "sem", "hold", "gpu", eps, "--permits", "2", "--take", "1", "--", "sh", "-c", script)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		holders = append(holders, cmd)
		require.Eventually(t, func() bool { _, err := os.Stat(tokenFile); return err == nil }, 20*time.Second, 20*time.Millisecond,
			"holder %d did not start its command", i)
	}
	info, _, err := cl.InspectLock(t.Context(), "gpu")
	require.NoError(t, err)
	require.Len(t, info.GetHolders(), 2, "both commands hold a permit at once")
	tokens := map[uint64]bool{}
	for _, h := range info.GetHolders() {
		require.EqualValues(t, 1, h.GetPermits())
		tokens[h.GetToken()] = true
	}
	for i := range 2 {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("token%d", i)))
		require.NoError(t, err)
		f := strings.Fields(string(b))
		require.Len(t, f, 2, "%q", b)
		require.Equal(t, "gpu", f[0])
		tok, err := strconv.ParseUint(f[1], 10, 64)
		require.NoError(t, err)
		require.True(t, tokens[tok], "command %d got token %d, not one of the grants %v", i, tok, tokens)
	}

	out, code := run(t, "sem", "hold", "gpu", eps, "--permits", "2", "--take", "1", "--wait", "300ms", "--", "true")
	require.Equal(t, ExitNotAcquiredForTest, code, out)
	out, code = run(t, "sem", "hold", "gpu", eps, "--permits", "3", "--take", "1", "--wait", "300ms", "--", "true")
	require.Equal(t, 1, code, "another capacity is a refusal, not a timeout: %s", out)

	require.NoError(t, os.WriteFile(release, nil, 0o644))
	for i, h := range holders {
		require.NoError(t, h.Wait(), "holder %d", i)
	}
	info, _, err = cl.InspectLock(t.Context(), "gpu")
	require.NoError(t, err)
	require.Empty(t, info.GetHolders(), "the permits are given back when the commands end")
	out, code = run(t, "sem", "hold", "gpu", eps, "--permits", "2", "--take", "2", "--wait", "5s", "--", "sh", "-c", "exit 3")
	require.Equal(t, 3, code, "all the permits are free again, and the command's code is concord's: %s", out)
}

// TestLockInspectShowsWhoHoldsWhoWaitsAndWhoForced walks the CLI's
// introspection end to end: `lock inspect --json` names the holder's
// session (labelled with the host and pid of the `lock hold` that holds it),
// its owner, its token (the one the command got) and since when it holds,
// and the waiters in their order; `lock ls` lists the lock; a force-release
// is recorded with its reason and caller, and shown by inspect afterwards.
func TestLockInspectShowsWhoHoldsWhoWaitsAndWhoForced(t *testing.T) {
	c := startCluster(t, 1)
	newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	tokenFile := filepath.Join(t.TempDir(), "token")
	holder := exec.Command(binary, "lock", "hold", "intro", eps, "--", "sh", "-c",
		fmt.Sprintf(`echo "$CONCORD_LOCK_TOKEN" > %[1]q.tmp && mv %[1]q.tmp %[1]q; sleep 60`, tokenFile))
	require.NoError(t, holder.Start())
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	require.Eventually(t, func() bool { _, err := os.Stat(tokenFile); return err == nil }, 20*time.Second, 20*time.Millisecond)
	var waiters []*exec.Cmd
	for i := range 2 {
		w := exec.Command(binary, "lock", "hold", "intro", eps, "--", "true")
		require.NoError(t, w.Start())
		t.Cleanup(func() { _ = w.Process.Kill(); _ = w.Wait() })
		waiters = append(waiters, w)
		require.Eventually(t, func() bool {
			out, _ := run(t, "lock", "inspect", "intro", eps, "--json")
			return strings.Count(out, `"since_unix_ms"`) == i+1
		}, 20*time.Second, 20*time.Millisecond, "waiter %d did not queue", i)
	}

	type entry struct {
		Token       uint64 `json:"token"`
		ID          uint64 `json:"id"`
		Session     int64  `json:"session"`
		SessionName string `json:"session_name"`
		Owner       string `json:"owner"`
		HeldSince   int64  `json:"held_since_unix_ms"`
		Since       int64  `json:"since_unix_ms"`
	}
	var inspected struct {
		Lock struct {
			Holders []entry `json:"holders"`
			Waiters []entry `json:"waiters"`
		} `json:"lock"`
		ForceReleases []struct {
			Token    uint64 `json:"token"`
			Reason   string `json:"reason"`
			ByClient string `json:"by_client"`
			Owner    string `json:"owner"`
		} `json:"force_releases"`
	}
	out, code := run(t, "lock", "inspect", "intro", eps, "--json")
	require.Zero(t, code, out)
	require.NoError(t, json.Unmarshal([]byte(out), &inspected), out)
	b, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	token, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	require.NoError(t, err)
	require.Len(t, inspected.Lock.Holders, 1, out)
	h := inspected.Lock.Holders[0]
	require.Equal(t, token, h.Token, "inspect shows the token the command got")
	require.Positive(t, h.Session)
	require.Contains(t, h.SessionName, fmt.Sprintf("pid %d", holder.Process.Pid), "the session names the process that holds")
	require.NotEmpty(t, h.Owner)
	require.Positive(t, h.HeldSince)
	require.Len(t, inspected.Lock.Waiters, 2, out)
	for i, w := range inspected.Lock.Waiters {
		require.Contains(t, w.SessionName, fmt.Sprintf("pid %d", waiters[i].Process.Pid), "waiters in the order they queued")
		require.GreaterOrEqual(t, w.Since, h.HeldSince)
	}
	require.Less(t, inspected.Lock.Waiters[0].ID, inspected.Lock.Waiters[1].ID)

	out, code = run(t, "lock", "ls", eps)
	require.Zero(t, code, out)
	require.Regexp(t, `(?m)^intro\s+mutex\s+1\s+2\s+`+strconv.FormatUint(token, 10)+`\s*$`, out)

	out, code = run(t, "lock", "release", "intro", eps, "--force", "--lock-token", strconv.FormatUint(token, 10), "--reason", "e2e: hung")
	require.Zero(t, code, out)
	err = holder.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ExitLockLostForTest, ee.ExitCode(), "the holder learns it lost the lock")
	for i, w := range waiters {
		require.NoError(t, w.Wait(), "waiter %d runs once the lock is free", i)
	}
	out, code = run(t, "lock", "inspect", "intro", eps, "--json")
	require.Zero(t, code, out)
	inspected.ForceReleases = nil
	require.NoError(t, json.Unmarshal([]byte(out), &inspected), out)
	require.Len(t, inspected.ForceReleases, 1, out)
	f := inspected.ForceReleases[0]
	require.Equal(t, token, f.Token)
	require.Equal(t, "e2e: hung", f.Reason)
	require.Equal(t, h.Owner, f.Owner)
	require.NotEmpty(t, f.ByClient, "the CLI sends its client ID")
	out, code = run(t, "lock", "inspect", "intro", eps)
	require.Zero(t, code, out)
	require.Contains(t, out, "force-releases:")
	require.Contains(t, out, "e2e: hung")
}
