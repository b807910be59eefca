package checker

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// NoticeOptions configure CheckLossNotice.
type NoticeOptions struct {
	// MaxClockRate is the fastest lease clock rate any member ran with
	// (at least 1): the server counts session TTLs and hold times on
	// lease clocks, which may run that much faster than the SDK's.
	MaxClockRate float64
	// Slack bounds how late, past the SDK's own deadline, a grant's Lost
	// may fire (liveness of the notice); default DefaultNoticeSlack.
	Slack time.Duration
}

// DefaultNoticeSlack is how late past the SDK's own deadline a grant's
// Lost may fire before CheckLossNotice reports it: the SDK's timers fire
// late on a loaded machine (a 2-core host running a 5-member cluster
// under faults), but not by a second.
const DefaultNoticeSlack = time.Second

// CheckLossNotice checks the SDK's promise that lock loss is not silent
// (docs/locks.md): every held grant has a context that ends, with a reason,
// the moment its session is lost or its hold time ends, so that the work
// it guards can stop. grants are the grants the clients held (the
// history's Grants), ops the workloads' operations (for force-releases).
//
// Safety: for each lock, when a grant G2 is returned to its client at t2,
// the grants of other owners returned before t2 that had not ended by
// then, as their holders saw it, together with G2 must fit the lock (a
// mutex holds one grant; a semaphore N permits; a read-write lock one
// writer or readers). A grant G1 counts as ended at the earliest of:
//   - its holder giving it up (invoking its release, or a conversion);
//   - its Lost channel closing;
//   - the SDK's session deadline as the holder last sampled it (when
//     Lost closed or it gave the grant up), less what a lease clock
//     running MaxClockRate fast takes off the TTL: the SDK has then told
//     the holder, or its timer is due to, whatever the timer's latency;
//   - its hold time, counted from the acquire's invocation (a lower bound
//     of the SDK's count, which starts when it sends the acquire), on a
//     clock running MaxClockRate fast.
//
// The safety check has no tolerance: the server counts a session's TTL
// from after a keep-alive arrived at the leader (anew at a leader change), a
// hold from the grant's application: never earlier than the SDK counts them
// (from when it sent them), so with lease clocks no faster than
// MaxClockRate the SDK's deadline always comes first; and it is the
// deadline that is checked, not when the SDK's timer fired, so the timer's
// latency needs no allowance. A holder that stops keeping its session
// alive on purpose (Session.Orphan, as the workloads' stalls do) is told at
// once.
//
// A grant an operator force-released (a force-release of the lock, of
// every holder or of its token, that may have applied after the grant was
// asked for and before t2) is exempt: the SDK learns of a force-release at
// the session's next keep-alive, after the lock may be granted again. So
// is a grant returned at t2 that such a force-release may have ended
// before it was returned: its holder holds nothing, and learns so at the
// next keep-alive, while the lock's next holder may already hold it. (A
// grant that overlaps another on the server is the lock model's to find.)
//
// Liveness: a grant whose Lost closed before its holder gave it up must
// have closed no later than Slack past the SDK's deadline then (the
// session's, or its hold time's counted from the acquire's return); a
// grant its holder gave up with Lost still open must not have been past
// that deadline by more than Slack. A grant force-released (by a
// force-release acknowledged, invoked after the grant was returned) must
// have seen Lost close within a TTL and Slack of the acknowledgement,
// unless its holder gave it up first: a keep-alive confirmed after the
// force-release names the grant as ended, and without one the session's
// deadline, at most a TTL after the force-release, ends it (docs/locks.md
// promises a third of the TTL when keep-alives are answered; under
// faults they may not be).
//
// Stats.Checked counts the grants checked.
func CheckLossNotice(grants []history.Grant, ops []history.Op, opt NoticeOptions) (Stats, []Violation) {
	if opt.Slack <= 0 {
		opt.Slack = DefaultNoticeSlack
	}
	rate := max(opt.MaxClockRate, 1)
	var vs []Violation
	type lockKey struct{ workload, name string }
	byLock := map[lockKey][]*history.Grant{}
	var keys []lockKey
	for i := range grants {
		g := &grants[i]
		for _, name := range g.Locks {
			k := lockKey{g.Workload, name}
			if byLock[k] == nil {
				keys = append(keys, k)
			}
			byLock[k] = append(byLock[k], g)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].workload != keys[j].workload {
			return keys[i].workload < keys[j].workload
		}
		return keys[i].name < keys[j].name
	})
	forces := map[string][]history.Op{}
	for _, o := range ops {
		if o.Kind == KindSemForce && o.Status != history.Fail && (o.Status == history.Unknown || o.Succeeded) {
			forces[o.Key] = append(forces[o.Key], o)
		}
	}
	for i := range grants {
		vs = append(vs, noticeLiveness(&grants[i], forces, opt.Slack)...)
	}
	for _, k := range keys {
		gs := byLock[k]
		sort.SliceStable(gs, func(i, j int) bool { return gs[i].Granted < gs[j].Granted })
		for j, g2 := range gs {
			t2 := g2.Granted
			if forceReleased(forces[k.name], g2, t2) {
				// g2 may have been force-released before its answer
				// reached its holder (a member lagging behind serves
				// the grant it applied before the force-release): it is
				// not held, however the SDK sees it, until the next
				// keep-alive says so (noticeLiveness bounds that).
				continue
			}
			var live []*history.Grant
			permits := g2.Permits
			for _, g1 := range gs[:j] {
				if g1.Owner == g2.Owner || g1.Granted >= t2 || NoticedBy(g1, rate) <= t2 || forceReleased(forces[k.name], g1, t2) {
					continue
				}
				live = append(live, g1)
				permits += g1.Permits
			}
			if permits <= g2.Capacity {
				continue
			}
			var d strings.Builder
			fmt.Fprintf(&d, "granted: %s\n", grantJSON(g2))
			for _, g1 := range live {
				fmt.Fprintf(&d, "not ended by then, as its holder saw it (ended by %s): %s\n",
					fmtAt(NoticedBy(g1, rate)), grantJSON(g1))
			}
			vs = append(vs, Violation{Checker: "loss-notice",
				Summary: fmt.Sprintf("%s: %s granted to %s (token %d) at %s while %d grant(s) of other owners were still held as their holders saw it: the SDK had not told them the lock was lost, nor was it due to",
					k.workload, k.name, g2.Owner, g2.Token, fmtAt(t2), len(live)),
				Details: d.String()})
		}
	}
	return Stats{Checked: len(grants)}, vs
}

// NoticedBy returns when the holder of g knew, or the SDK was due to tell
// it, that g may have ended (see CheckLossNotice), with the server's
// clocks running up to rate fast; math.MaxInt64 if never during the run.
func NoticedBy(g *history.Grant, rate float64) int64 {
	rate = max(rate, 1)
	at := int64(math.MaxInt64)
	early := func(t int64) {
		if t > 0 && t < at {
			at = t
		}
	}
	early(g.Ended)
	early(g.Lost)
	ttl := time.Duration(g.TTL) * time.Millisecond
	shrink := int64(ttl) - int64(float64(ttl)/rate) // what a fast clock takes off a TTL
	if g.LostDeadline > 0 {
		early(g.LostDeadline - shrink)
	}
	if g.EndDeadline > 0 {
		early(g.EndDeadline - shrink)
	}
	if g.HoldMs > 0 {
		early(g.Call + int64(float64(time.Duration(g.HoldMs)*time.Millisecond)/rate))
	}
	return at
}

// noticeLiveness checks that g's Lost closed, or was open when its holder
// gave it up, within slack of the SDK's deadline then.
func noticeLiveness(g *history.Grant, forces map[string][]history.Op, slack time.Duration) []Violation {
	holdEnd := int64(0)
	if g.HoldMs > 0 {
		// The SDK counts the hold from when it sent the acquire, before
		// the acquire returned.
		holdEnd = g.Granted + int64(time.Duration(g.HoldMs)*time.Millisecond)
	}
	due := func(deadline int64) int64 {
		if holdEnd > 0 && (deadline <= 0 || holdEnd < deadline) {
			return holdEnd
		}
		return deadline
	}
	var what string
	var at, by int64
	switch {
	case g.Lost > 0 && (g.Ended == 0 || g.Lost < g.Ended):
		at, by = g.Lost, due(g.LostDeadline)
		what = "its Lost closed"
	case g.Ended > 0:
		at, by = g.Ended, due(g.EndDeadline)
		what = "its holder gave it up with Lost still open"
	default:
		return nil
	}
	var vs []Violation
	if by > 0 && at > by+int64(slack) {
		vs = append(vs, Violation{Checker: "loss-notice",
			Summary: fmt.Sprintf("%s: grant of %s to %s (token %d): %s at %s, %s past the SDK's deadline of %s (more than the %s allowed)",
				g.Workload, strings.Join(g.Locks, ","), g.Owner, g.Token, what, fmtAt(at), time.Duration(at-by).Round(time.Millisecond), fmtAt(by), slack),
			Details: grantJSON(g)})
	}
	ttl := time.Duration(g.TTL) * time.Millisecond
	for _, name := range g.Locks {
		for _, f := range forces[name] {
			if f.Status != history.OK || !f.Succeeded || (f.Token != 0 && f.Token != g.Token) || f.Call <= g.Granted {
				continue
			}
			by := f.Return + int64(ttl+slack)
			if (g.Lost > 0 && g.Lost <= by) || (g.Ended > 0 && g.Ended <= by) {
				continue
			}
			vs = append(vs, Violation{Checker: "loss-notice",
				Summary: fmt.Sprintf("%s: grant of %s to %s (token %d): force-released at %s, and its Lost still open at %s, a TTL of %s and %s later",
					g.Workload, name, g.Owner, g.Token, fmtAt(f.Return), fmtAt(by), ttl, slack),
				Details: grantJSON(g) + "\nforce-release: " + f.String()})
			return vs
		}
	}
	return vs
}

// forceReleased reports whether a force-release of the lock, of g or of
// every holder, may have ended g before t2.
func forceReleased(forces []history.Op, g *history.Grant, t2 int64) bool {
	for _, f := range forces {
		if (f.Token == 0 || f.Token == g.Token) && f.Call < t2 && (f.Status == history.Unknown || f.Return > g.Call) {
			return true
		}
	}
	return false
}

func grantJSON(g *history.Grant) string {
	b, _ := json.Marshal(g)
	return string(b)
}

// fmtAt renders a clock reading as seconds since the run started.
func fmtAt(t int64) string {
	if t == math.MaxInt64 {
		return "never"
	}
	return fmt.Sprintf("%.3fs", time.Duration(t).Seconds())
}
