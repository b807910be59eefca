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
			nemesis.Kill, nemesis.Pause, nemesis.ClockFastLeader, nemesis.ClockSlowFollower, nemesis.RemoveReadd, nemesis.Move, nemesis.Impostor}
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
