// Package nemesis injects faults into a robustness run: network partitions
// and slow links through the per-link proxies, kill -9 and SIGSTOP of
// processes, skewed lease clocks, and membership changes. Faults come from
// a schedule drawn from a seed: the same seed and profile give the same
// schedule. Choices that depend on the running cluster (who leads) are made
// when a step runs, by rules fixed in the step, and written to the run's
// timeline.
package nemesis

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/tests/robustness/cluster"
)

// Lane is a class of faults. Steps of one lane never overlap; lanes run
// concurrently, which combines faults of different classes.
type Lane string

// Lanes.
const (
	LaneNetwork    Lane = "network"
	LaneProcess    Lane = "process"
	LaneMembership Lane = "membership"
)

// Kind is a fault.
type Kind string

// Faults.
const (
	// IsolateLeader cuts every link to and from the leader.
	IsolateLeader Kind = "isolate-leader"
	// IsolateMember cuts every link to and from a fixed member
	// (Step.Member), for targeted scenarios.
	IsolateMember Kind = "isolate-member"
	// Minority cuts a random minority off from the majority.
	Minority Kind = "random-minority"
	// MajoritiesRing (5 members) lets each member reach only its two
	// ring neighbours: every member sees a majority, no two the same.
	MajoritiesRing Kind = "majorities-ring"
	// Bridge splits the members in two halves that only a bridge member
	// connects.
	Bridge Kind = "bridge"
	// OneWayLeader drops what the leader sends to its followers, while
	// the followers still reach the leader.
	OneWayLeader Kind = "one-way-leader"
	// SlowLinks delays a random half of the directed links.
	SlowLinks Kind = "slow-links"

	// Kill kills a member with SIGKILL and restarts it on its data dir
	// after the step's duration.
	Kill Kind = "kill"
	// Pause stops a member with SIGSTOP for the step's duration.
	Pause Kind = "pause"
	// Stop stops a member gracefully with SIGTERM, as a rolling restart
	// does (a leader hands its leadership over first), and restarts it on
	// its data dir after the step's duration. A stop that hangs is a
	// violation.
	Stop Kind = "stop"
	// Impostor kills a non-leader and puts a one-member cluster of its
	// own, under the member's ID, at the member's address for the step's
	// duration (an address reused by another cluster, a member started on
	// another cluster's data dir); then checks that the impostor's cluster
	// is unchanged (same term, still its own leader, its data intact),
	// stops it and restarts the member on its data dir.
	Impostor Kind = "impostor"
	// ClockFastLeader restarts the leader with a lease clock running fast
	// (and offset) and hands leadership back to it.
	ClockFastLeader Kind = "clock-fast-leader"
	// ClockSlowFollower restarts a follower with a slow, offset clock.
	ClockSlowFollower Kind = "clock-slow-follower"

	// RemoveReadd removes a non-leader from the cluster and, after the
	// step's duration, adds it back under a new ID with an empty data dir.
	RemoveReadd Kind = "remove-readd"
	// Move kills a non-leader, moves it to a new peer address (a new
	// proxy in front of it) with UpdateMember, keeping its ID, vote and
	// data, and restarts it there on its data dir; after the step's
	// duration it is healed by waiting until it takes part at the new
	// address.
	Move Kind = "move"
)

// Target says which member a process fault hits.
type Target string

// Targets.
const (
	TargetLeader   Target = "leader"
	TargetFollower Target = "follower"
	TargetAny      Target = "any"
)

// Step is one scheduled fault.
type Step struct {
	Lane  Lane
	Index int
	// At is when the fault starts, from the start of the fault period.
	At time.Duration
	// Duration is how long it lasts before it is healed.
	Duration time.Duration
	Kind     Kind
	Target   Target
	// Mode is how cut links fail: blackhole or reset.
	Mode faultnet.Mode
	// Delay is the delay of slowed links.
	Delay time.Duration
	// Clock is the skew of clock faults.
	Clock cluster.Clock
	// Member is the target of IsolateMember.
	Member int
	// Pick seeds the choices made when the step runs (which minority,
	// which follower), so they too follow from the seed.
	Pick uint64
}

// String describes the step on one line.
func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%7.1fs +%.1fs %-10s %s", s.At.Seconds(), s.Duration.Seconds(), s.Lane, s.Kind)
	switch s.Kind {
	case IsolateLeader, IsolateMember, Minority, MajoritiesRing, Bridge, OneWayLeader:
		fmt.Fprintf(&b, " (%s)", s.Mode)
	case SlowLinks:
		fmt.Fprintf(&b, " (%s)", s.Delay)
	case Kill, Pause, Stop:
		fmt.Fprintf(&b, " (%s)", s.Target)
	case ClockFastLeader, ClockSlowFollower:
		fmt.Fprintf(&b, " (%s)", s.Clock)
	}
	return b.String()
}

// Profile shapes a schedule.
type Profile struct {
	// Size is the cluster size; some topologies need 5 members.
	Size int
	// Duration is the length of the fault period.
	Duration time.Duration
	// Lanes enabled.
	Network, Process, Membership bool
	// Clock enables clock faults (in the process lane).
	Clock bool
	// Faults last between MinFault and MaxFault, with gaps between
	// MinGap and MaxGap in each lane.
	MinFault, MaxFault time.Duration
	MinGap, MaxGap     time.Duration
	// MaxClockOffset bounds clock offsets (either way).
	MaxClockOffset time.Duration
	// FastRate and SlowRate bound clock rates: fast clocks run at up to
	// FastRate, slow ones down to SlowRate.
	FastRate, SlowRate float64
	// MembershipEvery spaces membership changes (they are slow).
	MembershipEvery time.Duration
	// Solo runs one fault at a time: the lanes' steps are strung one
	// after the other instead of overlapping.
	Solo bool
}

// Schedule is a run's faults.
type Schedule []Step

// String lists the steps, one per line.
func (s Schedule) String() string {
	var b strings.Builder
	for _, st := range s {
		b.WriteString(st.String() + "\n")
	}
	return b.String()
}

// ClockRates returns the fastest and slowest lease clock rate the schedule
// gives any member (1 when it skews no clock that way).
func (s Schedule) ClockRates() (fastest, slowest float64) {
	fastest, slowest = 1, 1
	for _, st := range s {
		if st.Clock.Rate == 0 {
			continue
		}
		fastest = max(fastest, st.Clock.Rate)
		slowest = min(slowest, st.Clock.Rate)
	}
	return fastest, slowest
}

// Count returns how many steps of each kind the schedule has.
func (s Schedule) Count() map[Kind]int {
	out := map[Kind]int{}
	for _, st := range s {
		out[st.Kind]++
	}
	return out
}

// Generate draws a schedule from seed. Each lane has its own random stream,
// so enabling a lane does not change the others. Every lane cycles through
// all of its kinds before repeating at random, so even a short run
// exercises each fault.
func Generate(seed int64, p Profile) Schedule {
	var out Schedule
	if p.Network {
		kinds := []Kind{IsolateLeader, Minority, Bridge, OneWayLeader, SlowLinks}
		if p.Size >= 5 {
			kinds = append(kinds, MajoritiesRing)
		}
		out = append(out, lane(seed, 1, LaneNetwork, kinds, p, p.MinGap)...)
	}
	if p.Process || p.Clock {
		var kinds []Kind
		if p.Process {
			kinds = append(kinds, Kill, Pause, Impostor, Stop)
		}
		if p.Clock {
			kinds = append(kinds, ClockFastLeader, ClockSlowFollower)
		}
		out = append(out, lane(seed, 2, LaneProcess, kinds, p, p.MinGap+p.MaxGap/2)...)
	}
	if p.Membership {
		every := p.MembershipEvery
		if every <= 0 {
			every = p.Duration
		}
		q := p
		q.MinGap, q.MaxGap = every/2, every
		q.MinFault, q.MaxFault = 2*time.Second, 4*time.Second
		out = append(out, lane(seed, 3, LaneMembership, []Kind{RemoveReadd, Move}, q, every/3)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	if p.Solo {
		out = solo(seed, out, p)
	}
	return out
}

// solo strings steps one after the other, in their drawn order, with gaps
// drawn from the profile, dropping those that would end after the run.
func solo(seed int64, steps Schedule, p Profile) Schedule {
	rng := rand.New(rand.NewPCG(uint64(seed), 4))
	var out Schedule
	at := p.MinGap
	for _, st := range steps {
		st.At = at
		if st.At+st.Duration > p.Duration {
			break
		}
		out = append(out, st)
		gap := p.MinGap
		if p.MaxGap > p.MinGap {
			gap += time.Duration(rng.Int64N(int64(p.MaxGap - p.MinGap)))
		}
		at = st.At + st.Duration + gap
	}
	return out
}

func lane(seed int64, stream uint64, l Lane, kinds []Kind, p Profile, first time.Duration) Schedule {
	rng := rand.New(rand.NewPCG(uint64(seed), stream))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	order := append([]Kind(nil), kinds...)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var out Schedule
	at := first
	for i := 0; ; i++ {
		kind := order[i%len(order)]
		if i >= len(order) {
			kind = kinds[rng.IntN(len(kinds))]
		}
		st := Step{Lane: l, Index: i, At: at, Duration: between(p.MinFault, p.MaxFault), Kind: kind, Pick: rng.Uint64()}
		switch kind {
		case IsolateLeader, Minority, MajoritiesRing, Bridge, OneWayLeader:
			st.Mode = faultnet.Blackhole
			if rng.IntN(3) == 0 {
				st.Mode = faultnet.Reset
			}
		case SlowLinks:
			st.Delay = between(20*time.Millisecond, 250*time.Millisecond)
		case Kill:
			st.Target = []Target{TargetLeader, TargetAny}[rng.IntN(2)]
		case Pause:
			st.Target = []Target{TargetLeader, TargetLeader, TargetAny}[rng.IntN(3)]
		case Stop:
			st.Target = []Target{TargetLeader, TargetLeader, TargetAny}[rng.IntN(3)]
		case ClockFastLeader:
			st.Target = TargetLeader
			st.Clock = cluster.Clock{Offset: offset(rng, p.MaxClockOffset), Rate: rate(rng, 1.1, max(1.1, p.FastRate))}
		case ClockSlowFollower:
			st.Target = TargetFollower
			st.Clock = cluster.Clock{Offset: offset(rng, p.MaxClockOffset), Rate: rate(rng, min(0.9, p.SlowRate), 0.9)}
		}
		if st.At+st.Duration > p.Duration {
			break
		}
		out = append(out, st)
		at = st.At + st.Duration + between(p.MinGap, p.MaxGap)
	}
	return out
}

func offset(rng *rand.Rand, bound time.Duration) time.Duration {
	if bound <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(2*bound))) - bound
}

func rate(rng *rand.Rand, lo, hi float64) float64 {
	r := lo + rng.Float64()*(hi-lo)
	return float64(int(r*100+0.5)) / 100
}
