package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

const sid = 7

// sop builds a session operation of session 7 with a 1s TTL; times in ms.
func sop(kind history.Kind, call, ret int64, f func(*history.Op)) history.Op {
	o := history.Op{Workload: "sessions", Kind: kind, Session: sid, TTL: 1000, Call: call * 1e6, Return: ret * 1e6, Status: history.OK}
	if f != nil {
		f(&o)
	}
	return o
}

func created(call, ret int64) history.Op { return sop(KindSessionCreate, call, ret, nil) }
func granted(call, ret int64) history.Op { return sop(KindKeepAlive, call, ret, nil) }
func refused(call, ret int64) history.Op {
	return sop(KindKeepAlive, call, ret, func(o *history.Op) { o.Expired = true })
}
func gone(call, ret int64) history.Op {
	return sop(KindSessionGet, call, ret, func(o *history.Op) { o.Expired = true })
}
func alive(call, ret int64) history.Op { return sop(KindSessionGet, call, ret, nil) }
func bound(key string, call, ret int64) history.Op {
	return sop(KindBoundPut, call, ret, func(o *history.Op) { o.Key, o.Value = key, "v" })
}
func read(key string, call, ret int64, found bool) history.Op {
	return sop(KindBoundGet, call, ret, func(o *history.Op) { o.Key, o.Found = key, found })
}
func revoked(call, ret int64) history.Op { return sop(KindSessionRevoke, call, ret, nil) }

func TestCheckSessions(t *testing.T) {
	// TTL 1s, margin 150ms: a refresh sent at s protects until s+850ms at
	// clock rate 1, s+516ms at rate 1.5.
	tests := []struct {
		name    string
		rate    float64
		ops     []history.Op
		problem string
	}{
		{"kept alive, then left to expire", 1, []history.Op{
			created(0, 10), bound("k", 20, 30), granted(200, 210), granted(400, 410), read("k", 420, 430, true),
			gone(1500, 1510), read("k", 1520, 1530, false),
		}, ""},
		{"expired while kept alive on time", 1, []history.Op{
			created(0, 10), granted(200, 210), granted(400, 410), gone(700, 710),
		}, "protection window"},
		{"bound key vanished while kept alive", 1, []history.Op{
			created(0, 10), bound("k", 20, 30), granted(300, 310), read("k", 500, 520, false),
		}, "protection window"},
		{"a fast clock shortens the window", 1.5, []history.Op{
			created(0, 10), granted(200, 210), gone(800, 810),
		}, ""},
		{"the same expiry at rate 1 is early", 1, []history.Op{
			created(0, 10), granted(200, 210), gone(800, 810),
		}, "protection window"},
		{"refresh refused while protected", 1, []history.Op{
			created(0, 10), granted(200, 210), refused(300, 320),
		}, "protection window"},
		{"refresh refused after a late refresh", 1, []history.Op{
			created(0, 10), granted(200, 210), refused(1200, 1220),
		}, ""},
		{"a late grant does not re-protect the past", 1, []history.Op{
			created(0, 10), gone(1200, 1210), read("k", 1300, 1310, false),
		}, ""},
		{"bound key outlives its session", 1, []history.Op{
			created(0, 10), bound("k", 20, 30), gone(1500, 1510), read("k", 1520, 1530, true),
		}, "bound key readable"},
		{"bound key outlives its revoke", 1, []history.Op{
			created(0, 10), bound("k", 20, 30), revoked(100, 120), read("k", 130, 140, true),
		}, "bound key readable"},
		{"revoke explains an early end", 1, []history.Op{
			created(0, 10), bound("k", 20, 30), granted(200, 210), revoked(300, 320), gone(330, 340), read("k", 350, 360, false),
		}, ""},
		{"session readable after observed gone", 1, []history.Op{
			created(0, 10), gone(1500, 1510), alive(1600, 1610),
		}, "session readable"},
		{"resurrected by a refresh", 1, []history.Op{
			created(0, 10), refused(1500, 1510), granted(1600, 1610),
		}, "keep-alive granted after"},
		{"a read concurrent with the expiry may see the key", 1, []history.Op{
			created(0, 10), bound("k", 20, 30), read("k", 1400, 1600, true), gone(1500, 1510),
		}, ""},
		{"bound put accepted after the end", 1, []history.Op{
			created(0, 10), gone(1500, 1510), bound("k", 1600, 1610),
		}, "bound put accepted"},
		{"SDK deadline protects", 1, []history.Op{
			created(0, 10),
			sop(KindBoundGet, 2000, 2010, func(o *history.Op) { o.Key, o.Found, o.Deadline = "k", true, 2900e6 }),
			gone(2100, 2200),
		}, "protection window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs := CheckSessions(tt.ops, SessionOptions{MaxClockRate: tt.rate})
			if tt.problem == "" {
				require.Empty(t, vs)
				return
			}
			require.NotEmpty(t, vs)
			var all []string
			for _, v := range vs {
				all = append(all, v.Summary)
			}
			require.Contains(t, strings.Join(all, "\n"), tt.problem)
		})
	}
}

func TestSessionMarginDefault(t *testing.T) {
	require.Equal(t, 350*time.Millisecond, SessionOptions{}.margin(3*time.Second))
}
