package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/concord-dev/concord/client"
)

// Exit codes of `lock hold` and `sem hold` when the command could not run
// under the lock, or lost it.
const (
	ExitNotAcquired = 4
	ExitLockLost    = 5
)

func newLockCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "lock", Short: "Run commands under distributed locks; inspect and release locks"}
	cmd.AddCommand(lockHold(g, false), lockInspect(g), lockLs(g), lockRelease(g))
	return cmd
}

func newSemCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sem", Short: "Run commands under counting semaphores"}
	cmd.AddCommand(lockHold(g, true))
	return cmd
}

type holdFlags struct {
	wait    time.Duration
	ttl     time.Duration
	hold    time.Duration
	permits int64
	take    int64
	grace   time.Duration
}

func lockHold(g *globals, semaphore bool) *cobra.Command {
	var f holdFlags
	use, short := "hold NAME -- COMMAND [ARGS...]", "Run a command while holding a mutex"
	if semaphore {
		use, short = "hold NAME --permits N -- COMMAND [ARGS...]", "Run a command while holding permits of a semaphore"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The command runs with CONCORD_LOCK_NAME, CONCORD_LOCK_TOKEN (the fencing
token: pass it to whatever you write to, and have it refuse older tokens) and
CONCORD_SESSION_ID in its environment. The lock is released when the command
exits, and concord exits with the command's code. If the lock cannot be taken
within --wait, concord exits 4 without running the command. If the lock is
lost while the command runs (its session expired, its --hold time ended, or an
operator force-released it), the command gets SIGTERM (SIGKILL after --grace)
and concord exits 5.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("%w: give the lock name, then -- and the command", client.ErrInvalidArgument)
			}
			if err := f.check(semaphore); err != nil {
				return err
			}
			claim := &client.LockClaim{Name: args[0], Kind: client.KindMutex}
			if semaphore {
				claim = &client.LockClaim{Name: args[0], Kind: client.KindSemaphore, Capacity: f.permits, Permits: f.take}
			}
			return runHolding(cmd, g, claim, f, args[1:])
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.wait, "wait", 0, "give up if not acquired within this long (0: wait as long as it takes)")
	fl.DurationVar(&f.ttl, "ttl", 10*time.Second, "TTL of the session the lock is bound to")
	fl.DurationVar(&f.hold, "hold", 0, "release the lock after this long even if the command still runs (0: never)")
	fl.DurationVar(&f.grace, "grace", 5*time.Second, "after losing the lock, time between SIGTERM and SIGKILL")
	if semaphore {
		fl.Int64Var(&f.permits, "permits", 0, "the semaphore's capacity (every holder must agree)")
		fl.Int64Var(&f.take, "take", 1, "permits this command takes")
	}
	return cmd
}

// check refuses flags that make no sense before anything is contacted.
func (f holdFlags) check(semaphore bool) error {
	switch {
	case f.wait < 0:
		return fmt.Errorf("%w: --wait %s is negative (0 waits as long as it takes)", client.ErrInvalidArgument, f.wait)
	case f.hold < 0:
		return fmt.Errorf("%w: --hold %s is negative (0 holds until the command exits)", client.ErrInvalidArgument, f.hold)
	case f.grace < 0:
		return fmt.Errorf("%w: --grace %s is negative", client.ErrInvalidArgument, f.grace)
	}
	if semaphore {
		switch {
		case f.permits < 1:
			return fmt.Errorf("%w: --permits (the semaphore's capacity) must be at least 1", client.ErrInvalidArgument)
		case f.take < 1 || f.take > f.permits:
			return fmt.Errorf("%w: --take %d is outside [1, --permits %d]", client.ErrInvalidArgument, f.take, f.permits)
		}
	}
	return nil
}

// interrupted is why a hold ended early: concord itself got a signal.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// code is the shell's code for a process ended by the signal.
func (i interrupted) code() int {
	if s, ok := i.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

func runHolding(cmd *cobra.Command, g *globals, claim *client.LockClaim, f holdFlags, argv []string) error {
	// An interrupt, a termination or a closed terminal (SIGHUP) stops the
	// wait, or the command, and releases the lock.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancelCause(cmd.Context())
	defer cancel(nil)
	go func() {
		select {
		case sig := <-sigs:
			cancel(interrupted{sig})
		case <-ctx.Done():
		}
	}()
	// A signal while connecting ends the hold as one during the wait does.
	stopped := func(err error) error {
		var intr interrupted
		if errors.As(context.Cause(ctx), &intr) {
			return &ExitError{Code: intr.code(), Err: fmt.Errorf("%v while connecting for lock %q", intr, claim.GetName())}
		}
		return err
	}
	cl, err := g.client(ctx)
	if err != nil {
		return stopped(err)
	}
	defer cl.Close()
	sess, err := cl.NewSession(ctx, client.WithTTL(f.ttl), client.WithName(sessionLabel(claim.GetName())))
	if err != nil {
		return stopped(err)
	}
	defer func() {
		select {
		case <-sess.Done():
			// Gone by the SDK's count (expired, or no keep-alive confirmed
			// within its TTL): the cluster ends it on its own, and a revoke
			// could wait --timeout for a cluster that cannot answer.
			sess.Orphan()
			return
		default:
		}
		cctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	actx := ctx
	if f.wait > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, f.wait)
		defer cancel()
	}
	grant, err := cl.AcquireLocks(actx, sess, cl.NewOwner(), []*client.LockClaim{claim}, client.AcquireOptions{Wait: true, Hold: f.hold})
	if err != nil {
		var intr interrupted
		switch {
		case errors.As(context.Cause(ctx), &intr):
			return &ExitError{Code: intr.code(), Err: fmt.Errorf("%v while waiting for lock %q", intr, claim.GetName())}
		case f.wait > 0 && errors.Is(err, context.DeadlineExceeded):
			return &ExitError{Code: ExitNotAcquired, Err: fmt.Errorf("lock %q not acquired within %s", claim.GetName(), f.wait)}
		}
		return err // bad input, a kind mismatch, no cluster: not a timeout to retry
	}
	child := exec.Command(argv[0], argv[1:]...)
	child.Stdin, child.Stdout, child.Stderr = g.stdin, g.stdout, g.stderr
	child.Env = append(os.Environ(),
		"CONCORD_LOCK_NAME="+claim.GetName(),
		"CONCORD_LOCK_TOKEN="+strconv.FormatUint(grant.Token, 10),
		"CONCORD_SESSION_ID="+strconv.FormatInt(sess.ID(), 10))
	// Off a terminal the command gets a process group of its own, so that
	// losing the lock stops everything it started. On a terminal it stays
	// in the foreground group: it can read the terminal, and Ctrl-C and
	// Ctrl-Z reach it and concord alike.
	group := !isTerminal(g.stdin)
	child.SysProcAttr = &syscall.SysProcAttr{Setpgid: group}
	if err := child.Start(); err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), g.timeout)
		defer rcancel()
		_ = grant.Release(rctx)
		code := 127 // not found
		if errors.Is(err, os.ErrPermission) {
			code = 126 // found, not executable
		}
		return &ExitError{Code: code, Err: err}
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	var lost, intr error
	select {
	case err = <-exited:
	case <-grant.Lost():
		lost = context.Cause(grant.Context())
		err = stopChild(child, group, exited, f.grace)
	case <-ctx.Done():
		intr = context.Cause(ctx)
		err = stopChild(child, group, exited, f.grace)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), g.timeout)
	defer rcancel()
	if lost == nil {
		// The command may have finished after the lock was lost, before
		// concord learned it (a force-release is reported by the next
		// keep-alive): the release then finds it gone.
		rerr := grant.Release(rctx)
		switch {
		case errors.Is(rerr, client.ErrLockLost):
			lost = rerr
		case errors.Is(rerr, client.ErrNotHeld):
			lost = fmt.Errorf("it was no longer held when the command ended (force-released, or its hold time or session ended; `concord lock inspect` lists force-releases): %w", rerr)
		case rerr != nil:
			fmt.Fprintln(g.stderr, "Warning: releasing the lock:", rerr)
		}
	}
	if lost != nil {
		return &ExitError{Code: ExitLockLost, Err: fmt.Errorf("lost lock %q while the command ran: %v", claim.GetName(), lost)}
	}
	var in interrupted
	if errors.As(intr, &in) {
		return &ExitError{Code: in.code(), Err: fmt.Errorf("%v: the command was stopped and the lock released", in)}
	}
	return exitOf(err)
}

// isTerminal reports whether r is a terminal. Not every character device
// is one: /dev/null, the stdin of cron, systemd and nohup, is not.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// maxSessionName is the longest session name a member accepts.
const maxSessionName = 256

// sessionLabel names the session of a hold, within maxSessionName: a long
// lock name (they may be up to --max-key-bytes) is cut, and shown whole by
// lock inspect.
func sessionLabel(lock string) string {
	host, _ := os.Hostname()
	const prefix = "lock-hold "
	suffix := fmt.Sprintf("@%s pid %d", host, os.Getpid())
	if room := maxSessionName - len(prefix) - len(suffix); len(lock) > room {
		lock = cutUTF8(lock, room-len("...")) + "..."
	}
	return cutUTF8(prefix+lock+suffix, maxSessionName)
}

// cutUTF8 returns at most n bytes of s, not splitting a character.
func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stopChild terminates the command (its process group, when it has one):
// SIGTERM, then SIGKILL after grace.
func stopChild(child *exec.Cmd, group bool, exited <-chan error, grace time.Duration) error {
	pid := child.Process.Pid
	if group {
		pid = -pid
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(grace):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return <-exited
	}
}

// exitOf turns the command's end into concord's: its exit code, or for a
// command ended by a signal the shell's 128+n.
func exitOf(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: 128 + int(ws.Signal()), Err: fmt.Errorf("the command was killed by %s (%v)", unix.SignalName(ws.Signal()), ws.Signal())}
		}
		return &ExitError{Code: ee.ExitCode()}
	}
	return err
}

func lockInspect(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a lock's holders, waiters in order, and recent force-releases",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				info, forced, err := cl.InspectLock(ctx, args[0])
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]any{"lock": lockJSON(info), "force_releases": forcedJSON(forced)})
				}
				printLock(g, info)
				if len(forced) > 0 {
					fmt.Fprintln(g.stdout, "\nforce-releases:")
					for _, r := range forced {
						at := time.UnixMilli(r.GetAtUnixMs())
						held := ""
						if since := r.GetHeldSinceUnixMs(); since > 0 {
							held = fmt.Sprintf(", held %s", at.Sub(time.UnixMilli(since)).Round(time.Millisecond))
						}
						by := ""
						if c := r.GetByClient(); c != "" {
							by = " by client " + display(c)
						}
						fmt.Fprintf(g.stdout, "  %s token %d (session %d, owner %s%s) at %s%s: %s\n", display(r.GetName()), r.GetToken(), r.GetSession(),
							display(r.GetOwner()), held, at.UTC().Format(time.RFC3339), by, display(r.GetReason()))
					}
				}
				return nil
			})
		},
	}
}

func printLock(g *globals, info *client.LockInfo) {
	kind := strings.TrimPrefix(info.GetKind().String(), "LOCK_KIND_")
	if len(info.GetHolders()) == 0 && len(info.GetWaiters()) == 0 {
		fmt.Fprintf(g.stdout, "%s: free\n", display(info.GetName()))
		return
	}
	fmt.Fprintf(g.stdout, "%s (%s", display(info.GetName()), strings.ToLower(kind))
	if info.GetCapacity() > 0 && info.GetKind() == client.KindSemaphore {
		fmt.Fprintf(g.stdout, ", %d permits", info.GetCapacity())
	}
	fmt.Fprintln(g.stdout, ")")
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tTOKEN/ID\tSESSION\tSESSION NAME\tOWNER\tMODE\tPERMITS\tSINCE\tHOLD TIME")
	for _, h := range info.GetHolders() {
		hold := "-"
		if ms := h.GetHoldMs(); ms > 0 {
			hold = (time.Duration(ms) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "  holder\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", h.GetToken(), h.GetSession(), display(h.GetSessionName()), display(h.GetOwner()),
			mode(h.GetMode()), h.GetPermits(), since(h.GetHeldSinceUnixMs()), hold)
	}
	for i, w := range info.GetWaiters() {
		fmt.Fprintf(tw, "  waiter %d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t\n", i+1, w.GetId(), w.GetSession(), display(w.GetSessionName()), display(w.GetOwner()),
			mode(w.GetMode()), w.GetPermits(), since(w.GetSinceUnixMs()))
	}
	_ = tw.Flush()
}

func mode(m interface{ String() string }) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "LOCK_MODE_"))
}

func since(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func lockJSON(info *client.LockInfo) map[string]any {
	holders := []map[string]any{}
	for _, h := range info.GetHolders() {
		holders = append(holders, map[string]any{"token": h.GetToken(), "session": h.GetSession(), "session_name": h.GetSessionName(),
			"owner": h.GetOwner(), "mode": mode(h.GetMode()), "permits": h.GetPermits(), "held_since_unix_ms": h.GetHeldSinceUnixMs(), "hold_ms": h.GetHoldMs()})
	}
	waiters := []map[string]any{}
	for _, w := range info.GetWaiters() {
		waiters = append(waiters, map[string]any{"id": w.GetId(), "session": w.GetSession(), "session_name": w.GetSessionName(),
			"owner": w.GetOwner(), "mode": mode(w.GetMode()), "permits": w.GetPermits(), "since_unix_ms": w.GetSinceUnixMs(), "locks": w.GetLocks()})
	}
	return map[string]any{"name": info.GetName(), "kind": strings.ToLower(strings.TrimPrefix(info.GetKind().String(), "LOCK_KIND_")),
		"capacity": info.GetCapacity(), "holders": holders, "waiters": waiters}
}

func forcedJSON(recs []*client.ForceReleaseRecord) []map[string]any {
	out := []map[string]any{}
	for _, r := range recs {
		out = append(out, map[string]any{"name": r.GetName(), "token": r.GetToken(), "session": r.GetSession(), "owner": r.GetOwner(),
			"at_unix_ms": r.GetAtUnixMs(), "reason": r.GetReason(), "revision": r.GetRevision(),
			"held_since_unix_ms": r.GetHeldSinceUnixMs(), "by_client": r.GetByClient()})
	}
	return out
}

func lockLs(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List held or awaited locks",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				locks, err := cl.ListLocks(ctx, prefix)
				if err != nil {
					return err
				}
				if g.json {
					out := make([]map[string]any, 0, len(locks))
					for _, l := range locks {
						out = append(out, lockJSON(l))
					}
					return writeJSON(g.stdout, out)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				// Every holder's token, in the order they hold: readers or
				// semaphore holders are several grants (those granted by
				// one command share its token, and appear once each).
				fmt.Fprintln(tw, "NAME\tKIND\tHOLDERS\tWAITERS\tTOKENS")
				for _, l := range locks {
					tokens := make([]string, 0, len(l.GetHolders()))
					for _, h := range l.GetHolders() {
						tokens = append(tokens, strconv.FormatUint(h.GetToken(), 10))
					}
					if len(tokens) == 0 {
						tokens = append(tokens, "-")
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", display(l.GetName()), strings.ToLower(strings.TrimPrefix(l.GetKind().String(), "LOCK_KIND_")),
						len(l.GetHolders()), len(l.GetWaiters()), strings.Join(tokens, ","))
				}
				return tw.Flush()
			})
		},
	}
}

func lockRelease(g *globals) *cobra.Command {
	var force bool
	var token uint64
	var reason string
	cmd := &cobra.Command{
		Use:   "release NAME --force",
		Short: "Force-release a lock held by someone else (recorded)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				return fmt.Errorf("%w: releasing another owner's lock needs --force (it is recorded and the holder is told it lost the lock)", client.ErrInvalidArgument)
			}
			if reason == "" {
				reason = fmt.Sprintf("concord lock release --force by %s", userAtHost())
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				n, err := cl.ForceReleaseLock(ctx, args[0], token, reason)
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]any{"released": n})
				}
				_, err = fmt.Fprintf(g.stdout, "force-released %d grant(s) of %s\n", n, display(args[0]))
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "confirm the force-release")
	// Not --token: that is the global bearer token.
	cmd.Flags().Uint64Var(&token, "lock-token", 0, "release only the grant with this fencing token (the holder's CONCORD_LOCK_TOKEN)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the release")
	return cmd
}

// userAtHost names who runs the CLI, for records: $USER, or the account of
// the process when the environment has none (cron, containers), at the
// host's name.
func userAtHost() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		} else {
			name = "uid " + strconv.Itoa(os.Getuid())
		}
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
