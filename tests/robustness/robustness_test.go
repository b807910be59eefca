package robustness

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/cluster"
	"github.com/concord-dev/concord/tests/robustness/workload"
)

// Environment variables and flags of the campaigns.
const (
	// envLong turns on the long campaign (or -campaign=long).
	envLong = "CONCORD_ROBUSTNESS_LONG"
	// envSeeds is the long campaign's number of seeds (default 20).
	envSeeds = "CONCORD_ROBUSTNESS_SEEDS"
	// envFirstSeed is the long campaign's first seed (default: from the
	// time); seeds follow consecutively.
	envFirstSeed = "CONCORD_ROBUSTNESS_FIRST_SEED"
	// envDuration overrides a run's traffic duration (e.g. 2m).
	envDuration = "CONCORD_ROBUSTNESS_DURATION"
	// envSummary is where the long campaign writes its markdown table.
	envSummary = "CONCORD_ROBUSTNESS_SUMMARY"
	// envSeed and envProfile select the run TestReplay replays.
	envSeed    = "CONCORD_ROBUSTNESS_SEED"
	envProfile = "CONCORD_ROBUSTNESS_PROFILE"
	// envShortSeeds overrides the short campaign's seeds ("1,2,3").
	envShortSeeds = "CONCORD_ROBUSTNESS_SHORT_SEEDS"
	// envLimitSeeds overrides the lock-limit campaign's seeds ("1").
	envLimitSeeds = "CONCORD_ROBUSTNESS_LIMIT_SEEDS"
	// envDir is where runs keep artifacts (default $TMPDIR/concord-robustness).
	envDir = "CONCORD_ROBUSTNESS_DIR"
	// envKeep keeps the artifacts of successful runs too.
	envKeep = "CONCORD_ROBUSTNESS_KEEP"
	// envServerFlags adds flags to every member's command line, e.g.
	// "--raft-log-store wal".
	envServerFlags = "CONCORD_ROBUSTNESS_SERVER_FLAGS"
)

var campaign = flag.String("campaign", "", `"long" runs the long randomized campaign (same as `+envLong+`=1)`)

// shortSeeds are the default test run's seeds: seed 3 runs 5 members.
var shortSeeds = []int64{1, 2, 3}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds concord once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "concord-robustness-bin-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, buildErr = cluster.Build(ctx, buildDir)
	})
	require.NoError(t, buildErr)
	return binPath
}

func artifactsDir(t *testing.T) string {
	dir := os.Getenv(envDir)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "concord-robustness")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func envDurationOr(t *testing.T, d time.Duration) time.Duration {
	if s := os.Getenv(envDuration); s != "" {
		v, err := time.ParseDuration(s)
		require.NoError(t, err, envDuration)
		return v
	}
	return d
}

// runOne runs a configuration and fails the test with the full report when
// it finds a violation.
func runOne(t *testing.T, cfg Config) *Result {
	t.Helper()
	cfg.Binary = binary(t)
	cfg.Dir = artifactsDir(t)
	cfg.KeepArtifacts = os.Getenv(envKeep) != ""
	if extra := os.Getenv(envServerFlags); extra != "" {
		cfg.ExtraFlags = append(cfg.ExtraFlags, strings.Fields(extra)...)
		cfg.ReplayEnv = envServerFlags + "='" + extra + "' "
	}
	cfg.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+5*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err, "the harness could not run %s seed %d", cfg.Profile, cfg.Seed)
	t.Log(res.Summary())
	if !res.Passed() {
		t.Errorf("\n%s", res.Report())
	}
	return res
}

// TestShortCampaign is the campaign of the default test run: a few seeds of
// the short profile, each with faults of every class, about a minute each.
func TestShortCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real clusters for about three minutes")
	}
	for _, seed := range seedsFrom(t, envShortSeeds, shortSeeds) {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			cfg, err := ConfigFor(ProfileShort, seed, envDurationOr(t, 0))
			require.NoError(t, err)
			runOne(t, cfg)
		})
	}
}

// TestLockLimitCampaign holds the whole lock table to a small --max-locks
// under faults (ProfileLockLimit): no grant past the limit, and a refusal
// over it only while the table is full, waiters' places and readers
// included, for try-locks of one mutex and of two at once, for waits,
// for try-locks of a read-write lock, to read or to write, and for
// try-locks of a semaphore's permits. One seed, about
// a minute, in the default test run; CONCORD_ROBUSTNESS_LIMIT_SEEDS=1,2,3
// runs more.
func TestLockLimitCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real cluster for about a minute")
	}
	for _, seed := range seedsFrom(t, envLimitSeeds, []int64{1}) {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			// 45 s of traffic, not the profile's 30: under a limit of
			// 4, readers took room from waits, and a 30 s run of seed 1
			// queued and then granted 3 to 7 of them. Under 5, with the
			// semaphore, three 45 s runs gave each counter below at
			// least 20 (shared grants beside another, 20 to 46).
			cfg, err := ConfigFor(ProfileLockLimit, seed, envDurationOr(t, 45*time.Second))
			require.NoError(t, err)
			res := runOne(t, cfg)
			// Each counter must be positive, or the run did not test what
			// its message names.
			for _, need := range []struct{ counter, missing string }{
				{"refused over the limit", "no acquire met the limit: the run did not test it"},
				{"refused over the limit, two at once", "no acquire of two mutexes at once met the limit: the run did not test LockAll under the limit"},
				{"waits queued, then granted", "no wait was queued and then granted: the run did not test waiters under the limit"},
				{"reads granted beside another reader", "no read grant was made while another was held: the run did not test shared grants under the limit"},
				{"reads refused over the limit", "no read met the limit: the run did not test shared grants under the limit"},
				{"semaphore takes granted beside another holder", "no permits were granted while another holder held the semaphore: the run did not test its holders under the limit"},
				{"semaphore takes refused over the limit", "no take of permits met the limit: the run did not test the semaphore under the limit"},
			} {
				require.Positive(t, res.Counters[workload.LockLimitWorkload+" "+need.counter], need.missing)
			}
		})
	}
}

// seedsFrom returns the comma-separated seeds in environment variable env,
// or def when it is not set.
func seedsFrom(t *testing.T, env string, def []int64) []int64 {
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	var seeds []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		require.NoError(t, err, env)
		seeds = append(seeds, n)
	}
	return seeds
}

// TestLongCampaign is the long randomized campaign, opt-in:
//
//	CONCORD_ROBUSTNESS_LONG=1 go test ./tests/robustness -run TestLongCampaign -v -timeout 0
//
// It runs CONCORD_ROBUSTNESS_SEEDS seeds (default 20) of the long profile,
// each CONCORD_ROBUSTNESS_DURATION of traffic (default 3m), and writes a
// markdown summary to CONCORD_ROBUSTNESS_SUMMARY (default
// robustness-summary.md in the artifacts directory).
func TestLongCampaign(t *testing.T) {
	if os.Getenv(envLong) == "" && *campaign != "long" {
		t.Skipf("opt-in: set %s=1 or pass -campaign=long", envLong)
	}
	n := 20
	if s := os.Getenv(envSeeds); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err, envSeeds)
		n = v
	}
	first := time.Now().Unix() % 1_000_000
	if s := os.Getenv(envFirstSeed); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, envFirstSeed)
		first = v
	}
	summary := os.Getenv(envSummary)
	if summary == "" {
		summary = filepath.Join(artifactsDir(t), "robustness-summary.md")
	}
	var results []*Result
	write := func() {
		body := fmt.Sprintf("# concord robustness campaign\n\n%s, %d seeds from %d, traffic %s per run\n\n%s",
			time.Now().Format(time.RFC3339), n, first, envDurationOr(t, 3*time.Minute), SummaryTable(results))
		require.NoError(t, os.WriteFile(summary, []byte(body), 0o644))
	}
	for i := 0; i < n; i++ {
		seed := first + int64(i)
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			cfg, err := ConfigFor(ProfileLong, seed, envDurationOr(t, 0))
			require.NoError(t, err)
			results = append(results, runOne(t, cfg))
		})
		write()
	}
	t.Logf("summary written to %s\n%s", summary, SummaryTable(results))
}

// TestReplay replays one run:
//
//	CONCORD_ROBUSTNESS_SEED=123 [CONCORD_ROBUSTNESS_PROFILE=long] [CONCORD_ROBUSTNESS_DURATION=2m] \
//	  go test ./tests/robustness -run TestReplay -v -timeout 0
//
// The profile defaults to short.
func TestReplay(t *testing.T) {
	s := os.Getenv(envSeed)
	if s == "" {
		t.Skipf("set %s to replay a seed", envSeed)
	}
	seed, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err, envSeed)
	profile := os.Getenv(envProfile)
	if profile == "" {
		profile = ProfileShort
	}
	cfg, err := ConfigFor(profile, seed, envDurationOr(t, 0))
	require.NoError(t, err)
	t.Logf("schedule:\n%s", cfg.schedule())
	runOne(t, cfg)
}

// TestCheckerCatchesStaleReads runs members built to serve linearizable
// reads from local state, isolates a follower, writes through the majority
// and reads through the follower: the checker must find the stale reads and
// draw them; the lock model must find the stale inspections, and the fenced
// list checker the appends lost by holders that wrote back a stale list.
func TestCheckerCatchesStaleReads(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real cluster")
	}
	cfg, err := ConfigFor(ProfileStaleReads, 1, 0)
	require.NoError(t, err)
	cfg.Binary = binary(t)
	cfg.Dir = t.TempDir()
	cfg.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err)
	t.Log(res.Summary())
	var lin, locks, fence int
	for _, v := range res.Violations {
		switch v.Checker {
		case "linearizability":
			lin++
			require.FileExists(t, v.Artifact, "a violation comes with its visualization")
			if strings.HasPrefix(v.Summary, "locks: ") {
				locks++
			}
		case "fence":
			fence++
		}
	}
	require.Positive(t, lin, "stale reads went unnoticed:\n%s", res.Report())
	require.Positive(t, locks, "stale lock inspections went unnoticed:\n%s", res.Report())
	require.Positive(t, fence, "appends lost to stale reads went unnoticed:\n%s", res.Report())
	require.NotEmpty(t, res.Dir, "a failed run keeps its artifacts")
	require.FileExists(t, res.HistoryPath)
	require.FileExists(t, res.TimelinePath)
	require.Contains(t, res.Report(), "CONCORD_ROBUSTNESS_SEED=1 ")
}

// TestCheckerCatchesEarlyExpiry runs members whose lease clocks run 8 times
// fast while the session checker, the lock model and the loss-notice
// checker assume normal clocks: sessions kept alive on time by that
// assumption expire early, and their grants end early and go to others
// while the SDK still vouches for them; the checkers must say so.
func TestCheckerCatchesEarlyExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real cluster")
	}
	cfg, err := ConfigFor(ProfileEarlyExpiry, 1, 0)
	require.NoError(t, err)
	cfg.Binary = binary(t)
	cfg.Dir = t.TempDir()
	cfg.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err)
	t.Log(res.Summary())
	var early, locks, notices int
	for _, v := range res.Violations {
		switch {
		case v.Checker == "session":
			if strings.Contains(v.Summary, "protection window") {
				early++
			}
		case v.Checker == "linearizability" && strings.HasPrefix(v.Summary, "locks: "):
			locks++
		case v.Checker == "loss-notice":
			// The SDK's deadline rests on lease clocks that do not run
			// fast: the lock went to others before it told the holders.
			notices++
		case v.Checker == "locks":
			// A token granted twice: the open bug of
			// TestRegressionLockTokenReusedWhenSessionsExpireTogether,
			// which sessions expiring together trigger here.
		default:
			t.Errorf("only the session checker, the lock model and the loss-notice checker may complain: %s", v)
		}
	}
	require.Positive(t, early, "early expiries went unnoticed:\n%s", res.Report())
	require.Positive(t, locks, "grants ended early went unnoticed:\n%s", res.Report())
	require.Positive(t, notices, "grants given to others while their holders' SDKs vouched for them went unnoticed:\n%s", res.Report())
}
