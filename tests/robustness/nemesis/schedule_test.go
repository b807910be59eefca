package nemesis

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var profile = Profile{
	Size: 5, Duration: 60 * time.Second,
	Network: true, Process: true, Clock: true, Membership: true,
	MinFault: time.Second, MaxFault: 3 * time.Second, MinGap: 500 * time.Millisecond, MaxGap: time.Second,
	MaxClockOffset: time.Minute, FastRate: 1.5, SlowRate: 0.6, MembershipEvery: 20 * time.Second,
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, b := Generate(42, profile), Generate(42, profile)
	require.Equal(t, a, b, "the same seed draws the same schedule")
	require.NotEqual(t, a, Generate(43, profile), "another seed draws another schedule")

	// Lanes draw from their own streams: turning one off leaves the
	// others as they were.
	noMembership := profile
	noMembership.Membership = false
	var net1, net2 Schedule
	for _, s := range a {
		if s.Lane == LaneNetwork {
			net1 = append(net1, s)
		}
	}
	for _, s := range Generate(42, noMembership) {
		if s.Lane == LaneNetwork {
			net2 = append(net2, s)
		}
	}
	require.Equal(t, net1, net2)
}

func TestGenerateCoversEveryFaultAndStaysInTheRun(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		s := Generate(seed, profile)
		kinds := s.Count()
		for _, k := range []Kind{IsolateLeader, Minority, MajoritiesRing, Bridge, OneWayLeader, SlowLinks, Kill, Pause, Stop, ClockFastLeader, ClockSlowFollower, RemoveReadd, Move, Impostor} {
			require.Positive(t, kinds[k], "seed %d has no %s:\n%s", seed, k, s)
		}
		byLane := map[Lane][]Step{}
		for _, st := range s {
			require.LessOrEqual(t, st.At+st.Duration, profile.Duration, "seed %d: %s ends after the run", seed, st)
			byLane[st.Lane] = append(byLane[st.Lane], st)
		}
		for l, steps := range byLane {
			sort.Slice(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
			for i := 1; i < len(steps); i++ {
				require.GreaterOrEqual(t, steps[i].At, steps[i-1].At+steps[i-1].Duration, "seed %d: lane %s overlaps itself", seed, l)
			}
		}
		fast, slow := s.ClockRates()
		require.LessOrEqual(t, fast, profile.FastRate+0.01)
		require.GreaterOrEqual(t, slow, profile.SlowRate-0.01)
	}
}

func TestGenerateSolo(t *testing.T) {
	p := profile
	p.Solo = true
	for seed := int64(1); seed <= 10; seed++ {
		s := Generate(seed, p)
		require.NotEmpty(t, s)
		for i := 1; i < len(s); i++ {
			require.GreaterOrEqual(t, s[i].At, s[i-1].At+s[i-1].Duration, "seed %d: solo faults overlap", seed)
		}
		require.Equal(t, s, Generate(seed, p))
	}
}

func TestGenerateWithoutFiveMembersHasNoRing(t *testing.T) {
	p := profile
	p.Size = 3
	for seed := int64(1); seed <= 20; seed++ {
		require.Zero(t, Generate(seed, p).Count()[MajoritiesRing])
	}
}

func reachable(n int, cut Cut) map[Link]bool {
	cutSet := map[Link]bool{}
	for _, l := range cut.Links {
		cutSet[l] = true
	}
	out := map[Link]bool{}
	for a := 0; a < n; a++ {
		for b := 0; b < n; b++ {
			if a != b && !cutSet[Link{a, b}] {
				out[Link{a, b}] = true
			}
		}
	}
	return out
}

func TestTopologies(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		cut   Cut
		check func(t *testing.T, up map[Link]bool)
	}{
		{"isolate", 3, IsolateCut(3, 1), func(t *testing.T, up map[Link]bool) {
			require.Equal(t, map[Link]bool{{0, 2}: true, {2, 0}: true}, up)
		}},
		{"minority of 5", 5, MinorityCut(5, 9), func(t *testing.T, up map[Link]bool) {
			require.Len(t, up, 2*1+3*2, "a 2-member and a 3-member side, each fully connected")
		}},
		{"minority of 3", 3, MinorityCut(3, 9), func(t *testing.T, up map[Link]bool) {
			require.Len(t, up, 2)
		}},
		{"majorities ring", 5, RingCut(5, 7), func(t *testing.T, up map[Link]bool) {
			for a := 0; a < 5; a++ {
				var out []int
				for b := 0; b < 5; b++ {
					if up[Link{a, b}] {
						out = append(out, b)
						require.True(t, up[Link{b, a}], "ring links are symmetric")
					}
				}
				require.Len(t, out, 2, "member %d sees exactly its two neighbours", a)
			}
		}},
		{"bridge of 5", 5, BridgeCut(5, 3), func(t *testing.T, up map[Link]bool) {
			bridge := -1
			for a := 0; a < 5; a++ {
				n := 0
				for b := 0; b < 5; b++ {
					if up[Link{a, b}] {
						n++
					}
				}
				if n == 4 {
					bridge = a
				} else {
					require.Equal(t, 2, n, "a non-bridge member sees its half and the bridge")
				}
			}
			require.GreaterOrEqual(t, bridge, 0)
		}},
		{"one way", 3, OneWayCut(3, 0), func(t *testing.T, up map[Link]bool) {
			require.False(t, up[Link{0, 1}])
			require.False(t, up[Link{0, 2}])
			require.True(t, up[Link{1, 0}])
			require.True(t, up[Link{2, 0}])
			require.True(t, up[Link{1, 2}])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, reachable(tt.n, tt.cut)) })
	}
	require.Equal(t, MinorityCut(5, 11), MinorityCut(5, 11), "topologies follow from the step's pick")
}
