// Package workload holds the robustness harness's workloads. A workload is
// a set of clients that run as goroutines in the harness, each issuing one
// operation at a time with a deadline and recording its invocation and
// completion; a model its operations are checked against; and the checks it
// runs once the cluster has healed.
//
// The workloads: KV (registers and watches), Sessions, Locks (mutexes),
// Fence (a list appended to through fenced writes), IDs (segments and
// snowflakes) and Semaphores (semaphores, read-write locks, mutexes taken
// together, hold times and force-releases). To plug in a new one,
// implement Workload: Run issues operations until its context ends and
// records them with Env.Recorder under the workload's Name; Model, if not
// nil, maps them onto a porcupine model that the harness checks for
// linearizability (partitioned as the model says); Finish does what must
// happen after the faults are healed (final reads, fences), recording those
// operations too; Check runs the workload's own checks on the whole
// history.
package workload

import (
	"context"
	"errors"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/cluster"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// Env is what a workload runs against.
type Env struct {
	Cluster  *cluster.Cluster
	Recorder *history.Recorder
	// Seed seeds the workload's random choices.
	Seed int64
	// FastestClock and SlowestClock are the extreme lease clock rates of
	// the run's members (1 when unskewed).
	FastestClock, SlowestClock float64
	// Logf receives progress messages (shown with -v).
	Logf func(format string, args ...any)
}

// Model is how a workload's operations are checked for linearizability.
type Model struct {
	// Porcupine is the sequential specification, with its partition
	// function.
	Porcupine porcupine.Model
	// Operations maps the workload's recorded operations onto the model.
	Operations func(ops []history.Op) []porcupine.Operation
	// PartitionName names a partition in reports.
	PartitionName func(ops []porcupine.Operation) string
}

// Workload is one kind of client traffic with its specification.
type Workload interface {
	// Name labels the workload's operations in the history.
	Name() string
	// Run issues operations until ctx ends. Background work it needs
	// beyond ctx (watches) runs until Finish returns.
	Run(ctx context.Context, env *Env) error
	// Model returns the workload's sequential model, or nil.
	Model() *Model
	// Finish runs after the faults are healed: final reads, fences, and
	// stopping background work.
	Finish(ctx context.Context, env *Env) error
	// Check checks the workload's own guarantees on the history.
	Check(env *Env, h *history.History) (checker.Stats, []checker.Violation)
}

// newClient connects a client to endpoints, retrying until ctx ends.
func newClient(ctx context.Context, endpoints []string) (*client.Client, error) {
	for {
		cl, err := client.New(ctx, client.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, RetryTimeout: 5 * time.Second})
		if err == nil {
			return cl, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !pause(ctx, 200*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// pause waits d or until ctx ends; it reports whether ctx is still live.
// It paces clients; it never synchronizes anything.
func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// certainFailure reports whether a write's error proves it had no effect:
// the request was malformed, or the client was closed before any attempt.
// Anything else (timeouts, lost connections, unavailable, unknown outcome)
// may hide an applied write: a call cut short by Close after an attempt
// wraps ErrClosed and ErrUnknownOutcome both, and is not a certain failure.
func certainFailure(err error) bool {
	if errors.Is(err, client.ErrUnknownOutcome) {
		return false
	}
	return errors.Is(err, client.ErrInvalidArgument) || errors.Is(err, client.ErrTooLarge) ||
		errors.Is(err, client.ErrEmptyKey) || errors.Is(err, client.ErrClosed)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
