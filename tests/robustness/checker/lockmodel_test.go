package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// lop builds a recorded operation on lock "m" by process p (owner "o<p>");
// times are in milliseconds.
func lop(p int, kind history.Kind, call, ret int64, status history.Status, f func(*history.Op)) history.Op {
	o := history.Op{Process: p, Workload: "locks", Kind: kind, Key: "m", Owner: owner(p), Call: call * 1e6, Return: ret * 1e6, Status: status}
	if f != nil {
		f(&o)
	}
	return o
}

func owner(p int) string { return string(rune('a' + p)) }

// protected makes an operation vouch for its session until ms (with the
// test options: rate 1, no margin).
func protected(ms int64) func(*history.Op) {
	return func(o *history.Op) { o.TTL, o.Deadline = 1000, ms*1e6 }
}

func both(fs ...func(*history.Op)) func(*history.Op) {
	return func(o *history.Op) {
		for _, f := range fs {
			if f != nil {
				f(o)
			}
		}
	}
}

func acquired(p int, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.OK, both(append(f, func(o *history.Op) { o.Succeeded, o.Token = true, token })...))
}

func acquireUnknown(p int, call, ret int64) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.Unknown, nil)
}

// acquireUnknownIn is an acquire of unknown outcome in session sess.
func acquireUnknownIn(p int, sess int64, call, ret int64) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.Unknown, func(o *history.Op) { o.Session = sess })
}

// inSession puts an operation in session sess.
func inSession(sess int64) func(*history.Op) {
	return func(o *history.Op) { o.Session = sess }
}

// sessionGone observes that session sess is gone.
func sessionGone(p int, sess int64, call, ret int64) history.Op {
	return lop(p, KindLockSessionGone, call, ret, history.OK, func(o *history.Op) { o.Session, o.Owner = sess, "" })
}

func tryGranted(p int, call, ret int64, token uint64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, func(o *history.Op) { o.Succeeded, o.Token = true, token })
}

func tryLocked(p int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, nil)
}

func released(p int, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return lop(p, KindLockRelease, call, ret, history.OK, both(append(f, func(o *history.Op) { o.Succeeded, o.Token = true, token })...))
}

func notHeld(p int, call, ret int64, token uint64) history.Op {
	return lop(p, KindLockRelease, call, ret, history.OK, func(o *history.Op) { o.Token = token })
}

func releaseUnknown(p int, call, ret int64, token uint64) history.Op {
	return lop(p, KindLockRelease, call, ret, history.Unknown, func(o *history.Op) { o.Token = token })
}

// inspected reads holder owner(holder)@token; holder < 0 reads the lock free.
func inspected(p int, call, ret int64, holder int, token uint64, f ...func(*history.Op)) history.Op {
	return lop(p, KindLockInspect, call, ret, history.OK, both(append(f, func(o *history.Op) {
		o.Owner, o.Token = "", 0
		if holder >= 0 {
			o.Holders, o.Owner, o.Token = 1, owner(holder), token
		}
	})...))
}

func fenced(p int, call, ret int64, token uint64, applied bool) history.Op {
	return lop(p, KindFencedWrite, call, ret, history.OK, func(o *history.Op) { o.Token, o.Succeeded = token, applied })
}

func TestLockModel(t *testing.T) {
	tests := []struct {
		name  string
		ops   []history.Op
		legal bool
	}{
		{"acquire, release, acquire with a higher token", []history.Op{
			acquired(0, 0, 10, 5), released(0, 11, 20, 5), acquired(1, 21, 30, 9), released(1, 31, 40, 9),
		}, true},
		{"tokens need not be consecutive", []history.Op{acquired(0, 0, 10, 5), released(0, 11, 20, 5), acquired(1, 21, 30, 500)}, true},
		{"a waiter is granted by the holder's release", []history.Op{
			acquired(0, 0, 10, 5), acquired(1, 5, 40, 12), released(0, 11, 15, 5), released(1, 41, 50, 12),
		}, true},
		{"token going back", []history.Op{
			acquired(0, 0, 10, 9), released(0, 11, 20, 9), acquired(1, 21, 30, 5),
		}, false},
		{"same token granted twice", []history.Op{
			acquired(0, 0, 10, 9), released(0, 11, 20, 9), acquired(1, 21, 30, 9),
		}, false},
		{"two overlapping holders: the first releases after the second was granted", []history.Op{
			acquired(0, 0, 10, 5), acquired(1, 20, 30, 9), released(0, 40, 50, 5),
		}, false},
		{"a grant may end by expiry: the next holder is granted, the old one's release is refused", []history.Op{
			acquired(0, 0, 10, 5), acquired(1, 20, 30, 9), notHeld(0, 40, 50, 5), released(1, 41, 50, 9),
		}, true},
		{"a grant made while the holder's session was known to live", []history.Op{
			acquired(0, 0, 10, 5, protected(5000)), acquired(1, 100, 110, 9),
		}, false},
		{"a grant made after the holder's session may have expired", []history.Op{
			acquired(0, 0, 10, 5, protected(1000)), acquired(1, 1000, 1010, 9),
		}, true},
		{"a later sample extends the holder's protection", []history.Op{
			acquired(0, 0, 10, 5, protected(100)), inspected(0, 20, 30, 0, 5, func(o *history.Op) { o.Self = owner(0) }, protected(5000)),
			acquired(1, 200, 210, 9),
		}, false},
		{"release refused while the session was known to live", []history.Op{
			acquired(0, 0, 10, 5, protected(5000)), notHeld(0, 100, 110, 5),
		}, false},
		{"release of a grant never made", []history.Op{released(0, 0, 10, 5)}, false},
		{"release under the wrong token", []history.Op{acquired(0, 0, 10, 5), released(0, 11, 20, 6)}, false},
		{"try-lock fails while held", []history.Op{acquired(0, 0, 10, 5), tryLocked(1, 11, 12)}, true},
		{"try-lock fails while free", []history.Op{tryLocked(1, 0, 1)}, false},
		{"try-lock fails after the release", []history.Op{acquired(0, 0, 10, 5), released(0, 11, 20, 5), tryLocked(1, 21, 22)}, false},
		{"try-lock concurrent with the release may fail", []history.Op{acquired(0, 0, 10, 5), released(0, 11, 20, 5), tryLocked(1, 15, 22)}, true},
		{"try-lock granted while held", []history.Op{acquired(0, 0, 10, 5, protected(5000)), tryGranted(1, 11, 12, 9)}, false},
		{"inspection reads the holder", []history.Op{acquired(0, 0, 10, 5), inspected(1, 11, 12, 0, 5), released(0, 13, 20, 5), inspected(1, 21, 22, -1, 0)}, true},
		{"inspection reads the wrong token", []history.Op{acquired(0, 0, 10, 5), inspected(1, 11, 12, 0, 6)}, false},
		{"inspection reads a holder that never acquired", []history.Op{inspected(1, 0, 1, 2, 6)}, false},
		{"inspection reads two holders", []history.Op{
			acquired(0, 0, 10, 5), lop(1, KindLockInspect, 11, 12, history.OK, func(o *history.Op) { o.Holders, o.Owner, o.Token = 2, owner(0), 5 }),
		}, false},
		{"inspection finds a protected grant gone", []history.Op{acquired(0, 0, 10, 5, protected(5000)), inspected(1, 11, 12, -1, 0)}, false},
		{"inspection reads a released grant", []history.Op{acquired(0, 0, 10, 5), released(0, 11, 20, 5), inspected(1, 21, 22, 0, 5)}, false},
		{"fenced write applies while held", []history.Op{acquired(0, 0, 10, 5), fenced(0, 11, 20, 5, true), released(0, 21, 30, 5)}, true},
		{"fenced write of a stale holder is refused", []history.Op{
			acquired(0, 0, 10, 5, protected(100)), acquired(1, 200, 210, 9), fenced(0, 300, 310, 5, false), fenced(1, 311, 320, 9, true),
		}, true},
		{"fenced write of a stale holder applies", []history.Op{
			acquired(0, 0, 10, 5), acquired(1, 200, 210, 9), fenced(0, 300, 310, 5, true),
		}, false},
		{"fenced write refused while held and protected", []history.Op{acquired(0, 0, 10, 5, protected(5000)), fenced(0, 11, 20, 5, false)}, false},
		{"acquire of unknown outcome may be granted", []history.Op{
			acquireUnknown(0, 0, 5), inspected(1, 10, 11, 0, 7), acquired(2, 20, 30, 9),
		}, true},
		{"acquire of unknown outcome may never apply", []history.Op{acquireUnknown(0, 0, 5), acquired(1, 10, 20, 3), inspected(2, 21, 22, 1, 3)}, true},
		{"a later grant below the token of an unknown acquire", []history.Op{
			acquireUnknown(0, 0, 5), inspected(1, 10, 11, 0, 7), acquired(2, 20, 30, 6),
		}, false},
		{"acquire of unknown outcome, session gone: it may never have applied", []history.Op{
			acquired(0, 0, 10, 5, protected(5000)), acquireUnknownIn(1, 7, 100, 110), sessionGone(1, 7, 115, 120), inspected(2, 200, 210, 0, 5),
		}, true},
		{"acquire of unknown outcome, session gone: it may have been granted", []history.Op{
			acquireUnknownIn(1, 7, 0, 5), inspected(2, 10, 15, 1, 7), sessionGone(1, 7, 15, 20), acquired(0, 30, 40, 9),
		}, true},
		{"acquire of unknown outcome cannot apply after its session was seen gone", []history.Op{
			acquireUnknownIn(1, 7, 0, 5), sessionGone(1, 7, 15, 20), acquired(0, 30, 40, 9, protected(5000)), inspected(2, 50, 51, 1, 12),
		}, false},
		{"acquire of unknown outcome granted after its session was seen gone", []history.Op{
			acquireUnknownIn(1, 7, 0, 5), sessionGone(1, 7, 15, 20), inspected(2, 30, 31, 1, 12),
		}, false},
		{"acquire of unknown outcome returning after its session was seen gone, granted later", []history.Op{
			sessionGone(1, 7, 5, 10), acquireUnknownIn(1, 7, 0, 15), inspected(2, 30, 31, 1, 12),
		}, false},
		{"acquire of unknown outcome granted while its session was being revoked", []history.Op{
			acquireUnknownIn(1, 7, 0, 5), inspected(2, 16, 17, 1, 12), sessionGone(1, 7, 15, 20), inspected(2, 30, 31, -1, 0),
		}, true},
		{"acquire of unknown outcome, session never seen gone, may apply late", []history.Op{
			acquireUnknownIn(1, 7, 0, 5), acquired(0, 30, 40, 9, protected(5000)), inspected(2, 50, 51, 1, 12),
		}, true},
		{"a grant outlives its session seen gone: an inspection reads it", []history.Op{
			acquired(0, 0, 10, 5, inSession(3), protected(5000)), sessionGone(1, 3, 20, 30), inspected(2, 40, 41, 0, 5),
		}, false},
		{"a grant outlives its session seen gone: its fenced write applies", []history.Op{
			acquired(0, 0, 10, 5, inSession(3)), sessionGone(1, 3, 20, 30), fenced(0, 40, 50, 5, true),
		}, false},
		{"a session seen gone ends its grant, protected or not", []history.Op{
			acquired(0, 0, 10, 5, inSession(3), protected(5000)), sessionGone(1, 3, 20, 30), acquired(1, 40, 50, 9), inspected(2, 60, 61, 1, 9),
		}, true},
		{"a session seen gone ends only its own grant", []history.Op{
			acquired(0, 0, 10, 5, inSession(3), protected(5000)), sessionGone(1, 4, 20, 30), inspected(2, 40, 41, 0, 5),
		}, true},
		{"release of unknown outcome may free the lock", []history.Op{
			acquired(0, 0, 10, 5, protected(5000)), releaseUnknown(0, 11, 12, 5), acquired(1, 100, 110, 9),
		}, true},
		{"locks are independent", []history.Op{
			acquired(0, 0, 10, 5), lop(1, KindLockAcquire, 11, 20, history.OK, func(o *history.Op) { o.Key, o.Succeeded, o.Token = "n", true, 7 }),
			released(0, 21, 30, 5),
		}, true},
	}
	opt := LockOptions{MaxClockRate: 1, Margin: func(time.Duration) time.Duration { return 0 }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs := CheckLinearizable(LockModel, LockOperations(tt.ops, opt), LinearizableOptions{Name: "locks", Timeout: 10 * time.Second, PartitionName: LockPartitionName})
			if tt.legal {
				require.Empty(t, vs)
			} else {
				require.NotEmpty(t, vs)
				require.Equal(t, "linearizability", vs[0].Checker)
				require.Contains(t, vs[0].Summary, "lock m")
			}
		})
	}
}

func TestLockOperations(t *testing.T) {
	ops := []history.Op{
		acquired(0, 0, 10, 5, protected(900)),
		acquireUnknown(1, 1, 2),
		lop(2, KindLockInspect, 3, 4, history.Fail, nil),
		lop(3, KindFencedWrite, 5, 6, history.Unknown, func(o *history.Op) { o.Token = 5 }),
		inspected(4, 7, 8, 0, 5, func(o *history.Op) { o.Self = "x" }),
	}
	got := LockOperations(ops, LockOptions{MaxClockRate: 1, Margin: func(time.Duration) time.Duration { return 0 }})
	require.Len(t, got, 3, "failed inspections and fenced writes of unknown outcome change no lock")
	bounded := LockOperations([]history.Op{acquireUnknownIn(1, 7, 1, 2), sessionGone(1, 7, 3, 4), acquired(0, 5, 10, 5)}, LockOptions{})
	require.Len(t, bounded, 3, "an observation that a session is gone goes to every lock")
	require.Equal(t, LockInput{Kind: KindLockSessionGone, Name: "m", Session: 7, Seals: true, Return: 4e6}, bounded[1].Input, "grants of m were requested in session 7")
	require.Equal(t, int64(4e6), bounded[0].Return, "an unknown acquire ends when its session is seen gone")
	require.True(t, bounded[0].Output.(LockOutput).Bounded)
	require.Equal(t, int64(900e6), got[0].Input.(LockInput).Protected)
	require.Equal(t, uint64(5), got[0].Output.(LockOutput).Token)
	require.True(t, got[1].Output.(LockOutput).Unknown)
	require.Greater(t, got[1].Return, int64(10e6), "an unknown acquire stays open past the end of the history")
	in, out := got[2].Input.(LockInput), got[2].Output.(LockOutput)
	require.Equal(t, "x", in.Owner, "an inspection acts for the inspector's own grant")
	require.Equal(t, LockOutput{Holders: 1, Holder: owner(0), HolderToken: 5}, out)

	// With a fast clock and the default margin, the window shrinks.
	o := acquired(0, 0, 10, 5, func(o *history.Op) { o.TTL, o.Deadline = 2000, 3000e6 })
	require.Equal(t, int64(1e9+1000e6-250e6), LockOptions{MaxClockRate: 2}.Protected(o))
	require.Zero(t, LockOptions{}.Protected(acquired(0, 0, 10, 5)))
}

func TestCheckLockTokens(t *testing.T) {
	_, vs := CheckLockTokens([]history.Op{acquired(0, 0, 10, 5), released(0, 11, 20, 5), acquired(1, 21, 30, 9), tryLocked(2, 31, 32)})
	require.Empty(t, vs)
	_, vs = CheckLockTokens([]history.Op{acquired(0, 0, 10, 875), tryGranted(1, 5, 12, 875),
		lop(2, KindLockAcquire, 11, 20, history.OK, func(o *history.Op) { o.Key, o.Succeeded, o.Token = "n", true, 875 })})
	require.Len(t, vs, 1, "the same token on another lock is fine")
	require.Equal(t, "locks", vs[0].Checker)
	require.Contains(t, vs[0].Summary, "lock m: token 875 granted twice, to a and to b")
}
