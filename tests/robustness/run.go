package robustness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/cluster"
	"github.com/concord-dev/concord/tests/robustness/history"
	"github.com/concord-dev/concord/tests/robustness/nemesis"
	"github.com/concord-dev/concord/tests/robustness/workload"
)

// Run runs one configuration: cluster, traffic, faults, heal, checks. It
// returns an error only when the harness itself could not run (the binary
// would not start, the cluster never formed); everything the system under
// test got wrong is a violation in the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("%s-seed-%d-%s", cfg.Profile, cfg.Seed, time.Now().Format("150405.000")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Profile: cfg.Profile, Seed: cfg.Seed, Size: cfg.Size, TrafficDuration: cfg.Duration, ReplayEnv: cfg.ReplayEnv, Dir: dir}
	started := time.Now()
	defer func() { res.Wall = time.Since(started) }()

	schedule := cfg.schedule()
	res.Schedule = schedule
	clock := history.NewClock()
	rec := history.NewRecorder(clock)
	timeline := nemesis.NewTimeline(clock)

	c, err := cluster.Start(ctx, cluster.Options{
		Binary: cfg.Binary, Size: cfg.Size, Dir: dir, ExtraFlags: cfg.ExtraFlags,
		SnapshotThreshold: 1024, SnapshotInterval: 2 * time.Second, TrailingLogs: 256,
		MinSessionTTL: cfg.SessionTTLFloor, Clock: cfg.MemberClock, Logf: logf,
		// Hold times get checkpoints, which a leader after a fault counts
		// on from: one that counted more than the time that passed would
		// end a grant early, which the model's lower bound on hold times
		// catches.
		LockHoldCheckpoint: cfg.LockHoldCheckpoint,
	})
	if err != nil {
		return res, fmt.Errorf("starting the cluster (logs in %s): %w", filepath.Join(dir, "logs"), err)
	}
	defer c.Close()
	// The workloads run under the rules the build applies: a conversion of
	// an ended grant is answered LOST from rules version 2 on, and the
	// semaphore model holds conversions to that (checker.SemSteps). The
	// leader raises the version about a second after it is ready.
	if err := c.WaitRulesVersion(ctx, fsm.RulesConversion, rulesVersionTimeout); err != nil {
		return res, fmt.Errorf("the cluster did not reach rules version %d (conversions answered LOST), which the semaphore model assumes (logs in %s): %w",
			fsm.RulesConversion, filepath.Join(dir, "logs"), err)
	}
	// And, at rules version 3, with the cluster named, so that every Raft
	// connection of the run names the cluster ID (peer.Mux), through the
	// faults. A binary of a release before (cfg.Binary) stays at 2, and
	// names none.
	clusterID := "(none: below rules version 3)"
	if named(c.Statuses(ctx)) {
		if clusterID, err = c.WaitClusterID(ctx, rulesVersionTimeout); err != nil {
			return res, fmt.Errorf("the cluster was not named (logs in %s): %w", filepath.Join(dir, "logs"), err)
		}
	}
	if err := avoidLeaders(ctx, c, cfg.AvoidLeader); err != nil {
		return res, err
	}
	timeline.Add("run", 0, "start", "note", "%d members up, at rules version %s, cluster ID %s; schedule of %d faults", cfg.Size, rulesVersions(c.Statuses(ctx)), clusterID, len(schedule))

	fastest, slowest := schedule.ClockRates()
	if r := cfg.MemberClock.Rate; r > 0 {
		fastest, slowest = max(fastest, r), min(slowest, r)
	}
	if cfg.AssumedClockRate > 0 {
		fastest = cfg.AssumedClockRate
	}
	env := &workload.Env{Cluster: c, Recorder: rec, Seed: cfg.Seed, FastestClock: fastest, SlowestClock: slowest, Logf: logf}
	var workloads []workload.Workload
	kv := workload.NewKV(cfg.KV)
	workloads = append(workloads, kv)
	var sessions *workload.Sessions
	if cfg.Sessions != nil {
		sessions = workload.NewSessions(*cfg.Sessions)
		workloads = append(workloads, sessions)
	}
	if cfg.Locks != nil {
		workloads = append(workloads, workload.NewLocks(*cfg.Locks))
	}
	if cfg.Fence != nil {
		workloads = append(workloads, workload.NewFence(*cfg.Fence))
	}
	if cfg.IDs != nil {
		workloads = append(workloads, workload.NewIDs(*cfg.IDs))
	}
	if cfg.Semaphores != nil {
		workloads = append(workloads, workload.NewSemaphores(*cfg.Semaphores))
	}

	// Traffic and faults.
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	for _, w := range workloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(runCtx, env); err != nil {
				logf("workload %s: %v", w.Name(), err)
			}
		}()
	}
	nem := nemesis.New(c, timeline, logf)
	nem.Run(runCtx, schedule)
	<-runCtx.Done()
	stop()
	wg.Wait()
	timeline.Add("run", 0, "stop", "note", "traffic stopped")

	// Heal, then liveness.
	var violations []checker.Violation
	fail := func(name string, err error) {
		violations = append(violations, checker.Violation{Checker: name, Summary: err.Error()})
	}
	if err := nem.Heal(ctx); err != nil {
		fail("liveness", fmt.Errorf("healing: %w", err))
	}
	for _, v := range nem.Violations() {
		fail(string(v.Kind), errors.New(v.Summary))
	}
	healed := time.Now()
	leader, err := c.WaitLeader(ctx, cfg.LivenessTimeout)
	if err != nil {
		fail("liveness", fmt.Errorf("no single ready leader within %s of the heal: %w", cfg.LivenessTimeout, err))
	} else {
		res.LeaderAfterHeal = time.Since(healed)
		timeline.Add("run", 0, "liveness", "note", "leader %s ready %s after the heal", c.Member(leader).Name, res.LeaderAfterHeal.Round(time.Millisecond))
	}
	err = c.Do(ctx, cfg.LivenessTimeout, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.Put(ctx, "robustness/liveness", []byte(fmt.Sprint(cfg.Seed)))
		return err
	})
	if err != nil {
		fail("liveness", fmt.Errorf("no write succeeded within %s of the heal: %w", cfg.LivenessTimeout, err))
	}

	// Final reads, fences, revokes.
	for _, w := range workloads {
		if err := w.Finish(ctx, env); err != nil {
			fail("final", fmt.Errorf("%s: %w", w.Name(), err))
		}
	}
	hashes, err := c.WaitConverged(ctx, 30*time.Second)
	if err != nil {
		fail("convergence", fmt.Errorf("members did not reach the same applied index and state hash: %w", err))
	} else if len(hashes) > 0 {
		timeline.Add("run", 0, "converged", "note", "every member at applied index %d, hash %.16s", hashes[0].Applied, hashes[0].Hash)
	}
	// How many acquires the leaders took as deferrable, and how many of
	// those they held back to write with a later entry
	// (--lock-queue-defer): the members' counters, each since its last
	// start, so lower bounds on the run's.
	for name, metric := range map[string]string{
		"members acquires deferred (at least)": "concord_raft_proposals_deferred_total",
		"members acquires parked (at least)":   "concord_raft_proposals_parked_total",
	} {
		n := 0
		for i := range c.Size() {
			if v, err := c.Counter(ctx, i, metric); err == nil {
				n += int(v)
			}
		}
		if n > 0 {
			if res.Counters == nil {
				res.Counters = map[string]int{}
			}
			res.Counters[name] = n
		}
	}

	// Checks.
	h := rec.Snapshot()
	res.Ops = len(h.Ops)
	res.OK, res.Failed, res.Unknown = h.Counts()
	res.CheckedBy = map[string]int{}
	res.Linearizability = map[string]checker.Stats{}
	vizDir := filepath.Join(dir, "visualizations")
	for _, w := range workloads {
		if m := w.Model(); m != nil {
			ops := m.Operations(h.Of(w.Name()))
			st, vs := checker.CheckLinearizable(m.Porcupine, ops, checker.LinearizableOptions{
				Name: w.Name(), Timeout: cfg.CheckTimeout, VisualizationDir: vizDir, PartitionName: m.PartitionName,
			})
			res.Checked += st.Checked
			res.CheckedBy["linearizability"] += st.Checked
			res.CheckedBy["linearizability/"+w.Name()] += st.Checked
			res.Inconclusive += st.Inconclusive
			res.Linearizability[w.Name()] = st
			violations = append(violations, vs...)
			violations = append(violations, checkInconclusive(w.Name(), st)...)
		}
		st, vs := w.Check(env, h)
		res.Checked += st.Checked
		if st.Checked > 0 {
			res.CheckedBy[w.Name()] += st.Checked
		}
		violations = append(violations, vs...)
		if c, ok := w.(counter); ok {
			for k, v := range c.Counters() {
				if res.Counters == nil {
					res.Counters = map[string]int{}
				}
				res.Counters[k] += v
			}
		}
	}
	st, vs := checkLossNotice(h, fastest, cfg.Locks != nil || cfg.Fence != nil || cfg.Semaphores != nil)
	res.Checked += st.Checked
	res.CheckedBy[lossNoticeChecked] = st.Checked
	violations = append(violations, vs...)
	res.WatchResets = kv.Compacted()
	res.WatchCompacted = len(res.WatchResets)
	for _, r := range res.WatchResets {
		logf("watch reset: %s", r)
	}
	if sessions != nil {
		res.SessionsUnresolved = sessions.Unresolved()
	}
	if k := timeline.Faults()[nemesis.Impostor]; k > 0 {
		if res.Counters == nil {
			res.Counters = map[string]int{}
		}
		res.Counters["nemesis impostor Raft streams refused"] = nem.ImpostorRefusals()
	}
	for k, v := range nem.StopCounts() {
		if res.Counters == nil {
			res.Counters = map[string]int{}
		}
		res.Counters["nemesis "+k] = v
	}
	res.Faults = timeline.Faults()
	violations = append(violations, checkFaults(schedule, res.Faults)...)
	res.Violations = violations
	res.Timeline = timeline.String()
	for _, v := range violations {
		if v.Artifact != "" {
			res.Visualizations = append(res.Visualizations, v.Artifact)
		}
	}

	// Artifacts: kept when something was wrong (or asked for).
	res.HistoryPath = filepath.Join(dir, "history.jsonl")
	res.TimelinePath = filepath.Join(dir, "timeline.txt")
	res.DataDirs = c.DataDirs()
	c.Close()
	if len(violations) > 0 || cfg.KeepArtifacts {
		err := errors.Join(
			h.WriteFile(res.HistoryPath),
			timeline.WriteFile(res.TimelinePath),
			os.WriteFile(filepath.Join(dir, "schedule.txt"), []byte(schedule.String()), 0o644),
			os.WriteFile(filepath.Join(dir, "report.txt"), []byte(res.Report()), 0o644),
		)
		if err != nil {
			logf("writing artifacts: %v", err)
		}
	} else {
		res.HistoryPath, res.TimelinePath, res.DataDirs = "", "", nil
		if err := os.RemoveAll(dir); err != nil {
			logf("removing %s: %v", dir, err)
		}
		res.Dir = ""
	}
	return res, nil
}

// rulesVersionTimeout bounds the wait, once the cluster is up, for every
// member to apply the build's rules version.
const rulesVersionTimeout = 30 * time.Second

// lossNoticeChecked names, in Result.CheckedBy, the grants the loss-notice
// checker checked.
const lossNoticeChecked = "loss notice"

// checkLossNotice runs the loss-notice checker (checker.CheckLossNotice) on
// the grants the lock, fence and semaphore clients held, with the server's
// lease clocks running up to rate fast. A run with lock workloads (holders)
// whose clients held no grant fails: the check would pass whatever the SDK
// does.
func checkLossNotice(h *history.History, rate float64, holders bool) (checker.Stats, []checker.Violation) {
	st, vs := checker.CheckLossNotice(h.Grants, h.Ops, checker.NoticeOptions{MaxClockRate: rate})
	if holders && st.Checked == 0 {
		vs = append(vs, checker.Violation{Checker: "loss-notice",
			Summary: "the lock workloads' clients held no grant: nothing was checked for loss notices"})
	}
	return st, vs
}

// counter is a workload that counts what its clients did, for the report.
type counter interface {
	Counters() map[string]int
}

// avoidLeaders moves leadership away from the listed members.
func avoidLeaders(ctx context.Context, c *cluster.Cluster, avoid []int) error {
	if len(avoid) == 0 {
		return nil
	}
	return cluster.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		leader, err := c.WaitLeader(ctx, 10*time.Second)
		if err != nil {
			return err
		}
		if !slices.Contains(avoid, leader) {
			return nil
		}
		target := ""
		for i := 0; i < c.Size(); i++ {
			if !slices.Contains(avoid, i) {
				target = c.Member(i).Name
				break
			}
		}
		err = c.Do(ctx, 10*time.Second, 3*time.Second, func(ctx context.Context, cl *client.Client) error {
			_, err := cl.TransferLeader(ctx, target)
			return err
		})
		if err != nil {
			return err
		}
		return fmt.Errorf("leadership moved to %s; checking again", target)
	})
}

// maxInconclusiveShare is the share of a model's operations that may lie in
// partitions whose linearizability check timed out before the run fails.
// A share of operations, not of partitions: the KV model's few hot keys
// (10 of 200-300) hold half of its operations and are the partitions that
// time out, so every hot key could go unchecked within 10% of partitions;
// a single key timing out on a loaded machine stays under it. The other
// models have a handful of partitions, so any one of them timing out is
// over it.
const maxInconclusiveShare = 0.10

// checkInconclusive reports a model whose partitions that timed out hold
// more than maxInconclusiveShare of its operations: the run checked too
// little of that model to pass.
func checkInconclusive(model string, st checker.Stats) []checker.Violation {
	if st.Inconclusive == 0 || float64(st.InconclusiveOps) <= maxInconclusiveShare*float64(st.Checked) {
		return nil
	}
	return []checker.Violation{{Checker: "inconclusive",
		Summary: fmt.Sprintf("%s: %d of %d partitions (%d of %d operations) timed out in the linearizability check, more than %.0f%% of the operations",
			model, st.Inconclusive, st.Partitions, st.InconclusiveOps, st.Checked, 100*maxInconclusiveShare)}}
}

// checkFaults reports a run whose nemesis injected fewer than half of the
// faults of its schedule (a step may fail when it finds no member to act
// on, and says so in the timeline): its checks ran against a cluster that
// was barely faulted, and would pass whatever the system does under faults.
func checkFaults(schedule nemesis.Schedule, injected map[nemesis.Kind]int) []checker.Violation {
	n := 0
	for _, c := range injected {
		n += c
	}
	if len(schedule) == 0 || 2*n >= len(schedule) {
		return nil
	}
	return []checker.Violation{{Checker: "nemesis",
		Summary: fmt.Sprintf("only %d of the %d scheduled faults were injected (see the errors in the timeline)", n, len(schedule))}}
}

// rulesVersions names the rules versions the answering members apply:
// "4", or "3 to 4" while a raise is on its way.
func rulesVersions(statuses []cluster.Status) string {
	lo, hi := uint32(0), uint32(0)
	for _, s := range statuses {
		if s.Err != nil {
			continue
		}
		if lo == 0 || s.RulesVersion < lo {
			lo = s.RulesVersion
		}
		hi = max(hi, s.RulesVersion)
	}
	switch {
	case hi == 0:
		return "unknown (no member answered)"
	case lo == hi:
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d to %d", lo, hi)
}

// named reports whether the cluster is to be named: no member that
// answers applies a rules version below 3, from which the leader names it.
func named(statuses []cluster.Status) bool {
	for _, s := range statuses {
		if s.Err == nil && s.RulesVersion < fsm.RulesClusterID {
			return false
		}
	}
	return true
}
