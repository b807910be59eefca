package robustness

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/nemesis"
)

// The short profile's combined runs (30 s) schedule every fault kind, as
// docs/robustness.md says: the default tests exercise each fault.
func TestShortProfileSchedulesEveryFaultKind(t *testing.T) {
	for seed := int64(1); seed <= 1000; seed++ {
		cfg, err := ConfigFor(ProfileShort, seed, 0)
		require.NoError(t, err)
		if cfg.Faults.Solo {
			continue
		}
		kinds := []nemesis.Kind{nemesis.IsolateLeader, nemesis.Minority, nemesis.Bridge, nemesis.OneWayLeader, nemesis.SlowLinks,
			nemesis.Kill, nemesis.Pause, nemesis.Stop, nemesis.ClockFastLeader, nemesis.ClockSlowFollower, nemesis.RemoveReadd, nemesis.Move, nemesis.Impostor}
		if cfg.Size >= 5 {
			kinds = append(kinds, nemesis.MajoritiesRing)
		}
		s := cfg.schedule()
		count := s.Count()
		for _, k := range kinds {
			require.Positive(t, count[k], "short seed %d (%d members) schedules no %s:\n%s", seed, cfg.Size, k, s)
		}
	}
}

// The long profile's combined runs schedule both membership changes, as
// docs/robustness.md says: a member removed and re-added, and a member
// moved to a new peer address.
func TestLongProfileSchedulesEveryMembershipChange(t *testing.T) {
	for seed := int64(1); seed <= 1000; seed++ {
		cfg, err := ConfigFor(ProfileLong, seed, 0)
		require.NoError(t, err)
		if cfg.Faults.Solo {
			continue
		}
		s := cfg.schedule()
		count := s.Count()
		for _, k := range []nemesis.Kind{nemesis.RemoveReadd, nemesis.Move} {
			require.Positive(t, count[k], "long seed %d (%d members) schedules no %s:\n%s", seed, cfg.Size, k, s)
		}
	}
}

// The lock-limit profile runs the short profile's cluster sizes and faults,
// with --max-locks and the lock workload under it alone.
func TestLockLimitProfileIsTheShortOnesFaults(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		short, err := ConfigFor(ProfileShort, seed, 0)
		require.NoError(t, err)
		limit, err := ConfigFor(ProfileLockLimit, seed, 0)
		require.NoError(t, err)
		require.Equal(t, short.Size, limit.Size)
		require.Equal(t, short.Faults, limit.Faults)
		require.Equal(t, []string{"--max-locks=5"}, limit.ExtraFlags)
		require.Equal(t, 5, limit.Locks.Limit)
		require.Equal(t, 1, limit.Locks.Semaphores, "the lock workload takes permits of its own semaphore")
		require.Nil(t, limit.Fence, "no other workload takes locks")
		require.Nil(t, limit.Semaphores)
	}
}
