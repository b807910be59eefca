package robustness

import (
	"fmt"
	"time"

	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/tests/robustness/cluster"
	"github.com/concord-dev/concord/tests/robustness/nemesis"
	"github.com/concord-dev/concord/tests/robustness/workload"
)

// Profiles.
const (
	// ProfileShort is the default test run's: 30 s of traffic and faults
	// of every class, on 3 members (5 when the seed is a multiple of 3),
	// combined (one at a time when the seed is 2 modulo 3).
	ProfileShort = "short"
	// ProfileLong is the long campaign's: minutes per seed, 3 or 5
	// members, longer faults, larger clock offsets.
	ProfileLong = "long"
	// ProfileEarlyExpiry is the session checker's and the lock model's
	// self-test: every member's lease clock runs 8 times fast, and the
	// checkers are told clocks run at the normal rate, so sessions kept
	// alive on time expire early, and their grants end early.
	ProfileEarlyExpiry = "early-expiry"
	// ProfileStaleReads is the checkers' self-test: members serve
	// linearizable reads from local state, one follower is isolated while
	// writes go through the majority and reads (of keys, of locks, of the
	// fenced list) through the follower.
	ProfileStaleReads = "stale-reads"
	// ProfileLockLimit holds the whole lock table to a small --max-locks
	// under faults of every class: the lock workload alone takes locks,
	// with try-locks of one mutex and of two, with waits, and with
	// try-locks of a read-write lock to read or to write, checked against
	// the lock-table model.
	ProfileLockLimit = "lock-limit"
)

// lockLimit is ProfileLockLimit's --max-locks: two held mutexes (a lock
// and its grant each) of the workload's three and one waiter's place, or
// a held mutex, the read-write lock and two readers, or the semaphore,
// its three holders and a reader's grant (a limit of 4, until the
// fifteenth session, left too little room for readers or holders to meet:
// runs of seed 1 saw 1 to 10 grants of the semaphore beside another).
const lockLimit = 5

// Config is one run.
type Config struct {
	Profile string
	Seed    int64
	// Size is the number of members.
	Size int
	// Duration is how long traffic and faults run before the heal.
	Duration time.Duration
	// Faults shapes the schedule drawn from the seed.
	Faults nemesis.Profile
	// Schedule, if set, replaces the drawn schedule (targeted scenarios).
	Schedule nemesis.Schedule
	// KV configures the key-value workload.
	KV workload.KVConfig
	// Sessions configures the session workload; nil leaves it out.
	Sessions *workload.SessionConfig
	// Locks, Fence and IDs configure the lock, fenced-resource and ID
	// workloads; nil leaves them out.
	Locks *workload.LockConfig
	Fence *workload.FenceConfig
	IDs   *workload.IDsConfig
	// Semaphores configures the semaphore workload; nil leaves it out
	// (both profiles run it; the short one with two clients).
	Semaphores *workload.SemaphoreConfig
	// ExtraFlags are added to every member's command line.
	ExtraFlags []string
	// ReplayEnv prefixes the replay command (environment the run needs
	// besides its seed and profile).
	ReplayEnv string
	// MemberClock is every member's lease clock from the start.
	MemberClock cluster.Clock
	// AssumedClockRate, if set, is the fastest clock rate the session
	// checker allows for instead of the true one (self-tests lie with it).
	AssumedClockRate float64
	// AvoidLeader lists members that must not lead when traffic starts
	// (leadership is moved away from them).
	AvoidLeader []int
	// SessionTTLFloor is the members' --min-session-ttl.
	SessionTTLFloor time.Duration
	// LockHoldCheckpoint is the members' --lock-hold-checkpoint (every
	// profile: 100ms, so that the 100-400 ms hold times of the semaphore
	// workload are checkpointed); 0 passes no flag, as a binary of a
	// release before it needs.
	LockHoldCheckpoint time.Duration
	// CheckTimeout bounds the linearizability check of one key.
	CheckTimeout time.Duration
	// LivenessTimeout bounds the wait for a leader, and for a write,
	// after the heal.
	LivenessTimeout time.Duration

	// Binary is the concord binary.
	Binary string
	// Dir is where runs keep their artifacts (a directory per run).
	Dir string
	// KeepArtifacts keeps a successful run's directory too.
	KeepArtifacts bool
	// Logf receives progress (go test -v shows it).
	Logf func(format string, args ...any)
}

// ConfigFor returns the configuration of a profile for a seed. duration,
// if not zero, overrides the profile's traffic duration.
func ConfigFor(profile string, seed int64, duration time.Duration) (Config, error) {
	c := Config{
		Profile:            profile,
		Seed:               seed,
		CheckTimeout:       30 * time.Second,
		LivenessTimeout:    20 * time.Second,
		SessionTTLFloor:    500 * time.Millisecond,
		LockHoldCheckpoint: 100 * time.Millisecond,
	}
	switch profile {
	case ProfileShort:
		c.shortFaults()
		c.KV = workload.KVConfig{Keys: 200, HotKeys: 10, Clients: 5, Watchers: 3}
		if c.Size == 5 {
			c.KV.Clients = 4
		}
		c.Sessions = &workload.SessionConfig{Holders: 2, SDKHolders: 1, TTL: 2 * time.Second}
		c.Locks = &workload.LockConfig{HolderConfig: workload.HolderConfig{Clients: 3, TTL: 2 * time.Second}, Locks: 2}
		c.Fence = &workload.FenceConfig{HolderConfig: workload.HolderConfig{Clients: 3, TTL: 2 * time.Second}}
		c.IDs = &workload.IDsConfig{}
		// Two clients: enough for every kind of lock the semaphore model
		// checks to meet faults on every change, at little cost.
		c.Semaphores = &workload.SemaphoreConfig{HolderConfig: workload.HolderConfig{Clients: 2, TTL: 2 * time.Second}}
	case ProfileLong:
		c.Size = 3
		if seed%2 == 0 {
			c.Size = 5
		}
		c.Duration = 3 * time.Minute
		c.Faults = nemesis.Profile{
			Network: true, Process: true, Clock: true, Membership: true,
			MinFault: 2 * time.Second, MaxFault: 10 * time.Second,
			MinGap: time.Second, MaxGap: 5 * time.Second,
			MaxClockOffset: 20 * time.Minute, FastRate: 1.5, SlowRate: 0.6,
			MembershipEvery: 40 * time.Second,
			// Half the seeds inject one fault at a time, half combine
			// them; independently of the size.
			Solo: (seed/2)%2 == 1,
		}
		c.KV = workload.KVConfig{Keys: 300, HotKeys: 10, Clients: 6, Watchers: 4}
		c.Sessions = &workload.SessionConfig{Holders: 3, SDKHolders: 1, TTL: 3 * time.Second}
		c.Locks = &workload.LockConfig{HolderConfig: workload.HolderConfig{Clients: 4, TTL: 3 * time.Second, Stalls: 3}, Locks: 3}
		c.Fence = &workload.FenceConfig{HolderConfig: workload.HolderConfig{Clients: 4, TTL: 3 * time.Second, Stalls: 3}}
		c.IDs = &workload.IDsConfig{AllocClients: 2, NextClients: 2, MemberSnowflakeClients: 2, SequenceClients: 2}
		c.Semaphores = &workload.SemaphoreConfig{HolderConfig: workload.HolderConfig{Clients: 4, TTL: 3 * time.Second, Stalls: 3}, Semaphores: 2}
		c.CheckTimeout = 60 * time.Second
	case ProfileLockLimit:
		c.shortFaults()
		c.ExtraFlags = []string{fmt.Sprintf("--max-locks=%d", lockLimit)}
		c.KV = workload.KVConfig{Keys: 20, HotKeys: 5, Clients: 1, Watchers: -1}
		c.Locks = &workload.LockConfig{HolderConfig: workload.HolderConfig{Clients: 4, TTL: 2 * time.Second, Stalls: 2}, Locks: 3, RWLocks: 1,
			Semaphores: 1, Limit: lockLimit}
	case ProfileStaleReads:
		c.Size = 3
		c.Duration = 10 * time.Second
		c.ExtraFlags = []string{"--fault-stale-linearizable-reads"}
		// Member n3 (index 2) is cut off for most of the run; the
		// harness makes sure it does not lead when the run starts.
		c.Schedule = nemesis.Schedule{{
			Lane: nemesis.LaneNetwork, At: time.Second, Duration: 8 * time.Second,
			Kind: nemesis.IsolateMember, Member: 2, Mode: faultnet.Blackhole,
		}}
		c.AvoidLeader = []int{2}
		c.KV = workload.KVConfig{Keys: 5, HotKeys: 5, Clients: 3, Watchers: -1, Writers: []int{0, 1}, PinnedReaders: []int{2, 2}}
		// Lock inspections and reads of the fenced list go through n3
		// too: a holder that writes back a stale list under a valid
		// token loses appends.
		c.Locks = &workload.LockConfig{HolderConfig: workload.HolderConfig{Clients: 3, Stalls: -1}, Locks: 1, InspectMembers: []int{2}}
		c.Fence = &workload.FenceConfig{HolderConfig: workload.HolderConfig{Clients: 2, Stalls: -1}, ReadMembers: []int{2}}
	case ProfileEarlyExpiry:
		c.Size = 3
		c.Duration = 12 * time.Second
		c.Schedule = nemesis.Schedule{}
		c.MemberClock = cluster.Clock{Rate: 8}
		c.AssumedClockRate = 1
		c.KV = workload.KVConfig{Keys: 5, HotKeys: 5, Clients: 1, Watchers: -1}
		c.Sessions = &workload.SessionConfig{Holders: 3, SDKHolders: 1, TTL: 2 * time.Second}
		// Grants end early with their sessions, while the lock model
		// believes the sessions protected.
		c.Locks = &workload.LockConfig{HolderConfig: workload.HolderConfig{Clients: 3, Stalls: -1}, Locks: 1}
	default:
		return c, fmt.Errorf("unknown profile %q (want %s, %s, %s, %s or %s)", profile, ProfileShort, ProfileLong, ProfileLockLimit, ProfileStaleReads, ProfileEarlyExpiry)
	}
	if duration > 0 {
		c.Duration = duration
	}
	c.Faults.Size = c.Size
	c.Faults.Duration = c.Duration
	return c, nil
}

// shortFaults sets the short profile's size, duration and faults (the
// lock-limit profile's too): 3 members, 5 when the seed is a multiple of
// 3; 30 s; faults of every class, one at a time for seeds 2, 5, 8, ...
func (c *Config) shortFaults() {
	c.Size = 3
	if c.Seed%3 == 0 {
		c.Size = 5
	}
	c.Duration = 30 * time.Second
	c.Faults = nemesis.Profile{
		Network: true, Process: true, Clock: true, Membership: true,
		MinFault: 1500 * time.Millisecond, MaxFault: 4 * time.Second,
		MinGap: 500 * time.Millisecond, MaxGap: 2 * time.Second,
		MaxClockOffset: 2 * time.Second, FastRate: 1.5, SlowRate: 0.7,
		MembershipEvery: 14 * time.Second,
		Solo:            c.Seed%3 == 2,
	}
}

// schedule returns the run's fault schedule.
func (c Config) schedule() nemesis.Schedule {
	if c.Schedule != nil {
		return c.Schedule
	}
	return nemesis.Generate(c.Seed, c.Faults)
}
