package checker

import (
	"fmt"
	"sort"
	"time"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// Session operation kinds.
const (
	// KindSessionCreate creates a session (Session, TTL set on success).
	KindSessionCreate history.Kind = "session-create"
	// KindKeepAlive refreshes a session once: ok and granted, or ok and
	// Expired when the server says the session does not exist.
	KindKeepAlive history.Kind = "keepalive"
	// KindSessionGet reads a session linearizably: Expired when not found.
	KindSessionGet history.Kind = "session-get"
	// KindSessionRevoke revokes a session.
	KindSessionRevoke history.Kind = "session-revoke"
	// KindBoundPut writes a key bound to a session: Expired when the
	// server refused because the session does not exist.
	KindBoundPut history.Kind = "bound-put"
	// KindBoundGet reads a session-bound key linearizably.
	KindBoundGet history.Kind = "bound-get"
)

// SessionOptions describe the clocks of the run, which bound how early a
// leader may expire a session.
type SessionOptions struct {
	// MaxClockRate is the fastest lease clock rate any member ran with
	// (at least 1). A leader whose clock runs r times too fast measures a
	// TTL in TTL/r of real time.
	MaxClockRate float64
	// Margin is subtracted from every protection window for scheduling
	// noise; default 10% of the TTL plus 50ms.
	Margin func(ttl time.Duration) time.Duration
}

func (o SessionOptions) margin(ttl time.Duration) time.Duration {
	if o.Margin != nil {
		return o.Margin(ttl)
	}
	return ttl/10 + 50*time.Millisecond
}

// CheckSessions checks the session guarantees on the recorded history:
//
// On time. A keep-alive (or the create) sent at s and confirmed by the server
// protects the session until s + TTL/MaxClockRate − Margin: the leader that
// granted it confirmed its leadership after s and measures the TTL from
// then on its own clock, and any later leader restarts every TTL when it
// takes over. For sessions kept alive by the SDK, s is the SDK's
// Session.Deadline() − TTL, sampled when each operation was invoked (early
// by the 0.5% the SDK takes off the TTL, which only shortens the window). A
// session kept alive on time up to T is one whose protection reaches T.
//
//   - not expired early: no observation that the session is gone (a session
//     read or keep-alive answering "not found", a bound put refused for it,
//     or an acknowledged bound key read as absent) completes while the
//     session is still protected, unless the client revoked it;
//   - nothing outlives its session: once a linearizable observation shows
//     the session ended (session read "not found", bound put refused,
//     revoke acknowledged), every later read of its bound keys finds them
//     absent, every later session read finds it gone, and no later
//     keep-alive or bound put succeeds;
//   - no resurrection: no keep-alive invoked after the server said the
//     session expired is granted.
//
// It also counts, as inconclusive, sessions whose holder stopped keeping
// them alive and never saw them expire (an availability matter, not a
// violation).
func CheckSessions(ops []history.Op, opt SessionOptions) (Stats, []Violation) {
	if opt.MaxClockRate < 1 {
		opt.MaxClockRate = 1
	}
	bySession := map[int64][]history.Op{}
	var ids []int64
	for _, o := range ops {
		if o.Session == 0 {
			continue
		}
		if _, ok := bySession[o.Session]; !ok {
			ids = append(ids, o.Session)
		}
		bySession[o.Session] = append(bySession[o.Session], o)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var (
		stats      Stats
		violations []Violation
	)
	for _, id := range ids {
		st, vs := checkSession(id, bySession[id], opt)
		stats.Add(st)
		violations = append(violations, vs...)
	}
	return stats, violations
}

func checkSession(id int64, ops []history.Op, opt SessionOptions) (Stats, []Violation) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	var (
		stats      Stats
		violations []Violation
		ttl        time.Duration
		revokeCall int64 = -1
	)
	report := func(summary string, involved ...history.Op) {
		if len(violations) >= 10 {
			return
		}
		var details string
		for _, o := range involved {
			details += o.String() + "\n"
		}
		violations = append(violations, Violation{Checker: "session", Summary: fmt.Sprintf("session %d: %s", id, summary), Details: details})
	}
	ackedKeys := map[string]int64{} // bound key -> return of its acknowledged put
	for _, o := range ops {
		if o.TTL > 0 && ttl == 0 {
			ttl = time.Duration(o.TTL) * time.Millisecond
		}
		if o.Kind == KindSessionRevoke && (revokeCall < 0 || o.Call < revokeCall) {
			revokeCall = o.Call
		}
		if o.Kind == KindBoundPut && o.Status == history.OK && !o.Expired {
			if r, ok := ackedKeys[o.Key]; !ok || o.Return < r {
				ackedKeys[o.Key] = o.Return
			}
		}
	}
	if ttl == 0 {
		return stats, nil
	}
	window := time.Duration(float64(ttl)/opt.MaxClockRate) - opt.margin(ttl)

	// Protection: the latest "sent" time of a confirmed refresh.
	type grant struct {
		sent int64
		op   history.Op
	}
	var grants []grant
	for _, o := range ops {
		switch {
		case o.Kind == KindSessionCreate && o.Status == history.OK:
			grants = append(grants, grant{o.Call, o})
		case o.Kind == KindKeepAlive && o.Status == history.OK && !o.Expired:
			grants = append(grants, grant{o.Call, o})
		}
		if o.Deadline > 0 {
			grants = append(grants, grant{o.Deadline - int64(ttl), o})
		}
	}
	protectedAt := func(t int64) (int64, *history.Op) {
		best, which := int64(-1), (*history.Op)(nil)
		for i := range grants {
			g := grants[i]
			if g.sent <= t && g.sent+int64(window) > best {
				best, which = g.sent+int64(window), &grants[i].op
			}
		}
		return best, which
	}

	// Observations that the session is gone.
	type gone struct {
		op         history.Op
		linearized bool // an observation of the replicated state
	}
	var observations []gone
	for _, o := range ops {
		if o.Status != history.OK {
			continue
		}
		switch {
		case o.Kind == KindSessionGet && o.Expired, o.Kind == KindBoundPut && o.Expired:
			observations = append(observations, gone{o, true})
		case o.Kind == KindKeepAlive && o.Expired:
			observations = append(observations, gone{o, false})
		case o.Kind == KindSessionRevoke:
			observations = append(observations, gone{o, true})
		case o.Kind == KindBoundGet && !o.Found:
			if r, ok := ackedKeys[o.Key]; ok && r < o.Call {
				observations = append(observations, gone{o, true})
			}
		}
	}
	for _, g := range observations {
		stats.Checked++
		o := g.op
		// Not expired early.
		if o.Kind != KindSessionRevoke && (revokeCall < 0 || o.Return < revokeCall) {
			if until, by := protectedAt(o.Return); by != nil && until > o.Return {
				report(fmt.Sprintf("observed gone %.3fs into its protection window, which lasts until %.3fs (TTL %s, max clock rate %.2f)",
					float64(o.Return-by.Call)/1e9, float64(until)/1e9, ttl, opt.MaxClockRate), *by, o)
			}
		}
		// Nothing outlives it, nothing resurrects it.
		for _, later := range ops {
			if later.Call <= o.Return || later.Status != history.OK {
				continue
			}
			switch {
			case later.Kind == KindKeepAlive && !later.Expired:
				report("keep-alive granted after the session was observed gone", o, later)
			case !g.linearized:
				continue
			case later.Kind == KindBoundGet && later.Found:
				report("bound key readable after the session was observed gone", o, later)
			case later.Kind == KindSessionGet && !later.Expired:
				report("session readable after it was observed gone", o, later)
			case later.Kind == KindBoundPut && !later.Expired:
				report("bound put accepted after the session was observed gone", o, later)
			}
		}
	}
	return stats, violations
}
