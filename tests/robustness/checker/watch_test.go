package checker

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

func ev(typ, key, value string, rev uint64) history.Event {
	return history.Event{Type: typ, Key: key, Value: value, Rev: rev}
}

func resp(rev uint64, evs ...history.Event) history.WatchResponse {
	return history.WatchResponse{Revision: rev, Events: evs}
}

func seg(watcher int, prefix string, start uint64, resps ...history.WatchResponse) *history.WatchSegment {
	return &history.WatchSegment{Watcher: watcher, Prefix: prefix, StartRev: start, Resps: resps}
}

func TestCheckWatches(t *testing.T) {
	writes := []history.Op{
		put(0, "kv/a", "a1", 0, 10, 5),
		put(0, "kv/b", "b1", 11, 20, 6),
		cas(1, "kv/a", "a1", "a2", 21, 30, true, 7),
		del(1, "kv/b", 31, 40, 1, 8),
		cas(1, "kv/a", "zz", "a3", 41, 50, false, 0),
		putUnknown(2, "kv/c", "c1", 51, 60),
		op(3, KindPut, "kv/d", 61, 70, history.Fail, func(o *history.Op) { o.Value = "d1" }),
	}
	full := seg(0, "kv/", 5,
		resp(6, ev("put", "kv/a", "a1", 5), ev("put", "kv/b", "b1", 6)),
		resp(8, ev("put", "kv/a", "a2", 7), ev("delete", "kv/b", "", 8)),
	)
	tests := []struct {
		name     string
		segments []*history.WatchSegment
		problem  string // "" when legal
	}{
		{"every write in order", []*history.WatchSegment{full}, ""},
		{"a narrower prefix", []*history.WatchSegment{seg(1, "kv/a", 5, resp(5, ev("put", "kv/a", "a1", 5)), resp(7, ev("put", "kv/a", "a2", 7)))}, ""},
		{"a segment that starts later", []*history.WatchSegment{seg(0, "kv/", 7, resp(8, ev("put", "kv/a", "a2", 7), ev("delete", "kv/b", "", 8)))}, ""},
		{"a segment that ends early covers only its range", []*history.WatchSegment{seg(0, "kv/", 5, resp(5, ev("put", "kv/a", "a1", 5)))}, ""},
		{"an applied write of unknown outcome", []*history.WatchSegment{seg(0, "kv/c", 5, resp(9, ev("put", "kv/c", "c1", 9)))}, ""},
		{"gap: a write missing", []*history.WatchSegment{seg(0, "kv/", 5,
			resp(6, ev("put", "kv/a", "a1", 5)),
			resp(8, ev("put", "kv/a", "a2", 7), ev("delete", "kv/b", "", 8)),
		)}, "acknowledged write missing"},
		{"responses out of order", []*history.WatchSegment{seg(0, "kv/a", 5,
			resp(7, ev("put", "kv/a", "a2", 7)),
			resp(5, ev("put", "kv/a", "a1", 5)),
		)}, "out of order"},
		{"event repeated", []*history.WatchSegment{seg(0, "kv/a", 5,
			resp(5, ev("put", "kv/a", "a1", 5)),
			resp(7, ev("put", "kv/a", "a1", 5), ev("put", "kv/a", "a2", 7)),
		)}, "outside its response's range"},
		{"event on an unwatched key", []*history.WatchSegment{seg(0, "kv/a", 6, resp(6, ev("put", "kv/b", "b1", 6)))}, "unwatched key"},
		{"event nobody wrote", []*history.WatchSegment{seg(0, "kv/z", 5, resp(9, ev("put", "kv/z", "zz", 9)))}, "nobody issued"},
		{"event at another revision than acknowledged", []*history.WatchSegment{seg(0, "kv/b", 5, resp(9, ev("put", "kv/b", "b1", 9)))}, "another revision"},
		{"event of a failed compare-and-swap", []*history.WatchSegment{seg(0, "kv/a", 8, resp(9, ev("put", "kv/a", "a3", 9)))}, "reported as failed"},
		{"delete delivered as put", []*history.WatchSegment{seg(0, "kv/b", 8, resp(8, ev("put", "kv/b", "b1", 8)))}, "delete delivered as put"},
		{"watchers disagree", []*history.WatchSegment{
			seg(0, "kv/c", 5, resp(9, ev("put", "kv/c", "c1", 9))),
			seg(1, "kv/c", 5, resp(9, ev("delete", "kv/c", "", 9))),
		}, "disagree"},
		{"two watchers of an applied write of unknown outcome", []*history.WatchSegment{
			seg(0, "kv/c", 5, resp(9, ev("put", "kv/c", "c1", 9))),
			seg(1, "kv/", 9, resp(9, ev("put", "kv/c", "c1", 9))),
		}, ""},
		{"a watcher skips an event another delivered", []*history.WatchSegment{
			seg(0, "kv/c", 5, resp(9, ev("put", "kv/c", "c1", 9))),
			seg(1, "kv/c", 5, resp(10)),
		}, "missing an event another watcher delivered"},
		{"a watcher that ended before the event is not missing it", []*history.WatchSegment{
			seg(0, "kv/c", 5, resp(9, ev("put", "kv/c", "c1", 9))),
			seg(1, "kv/c", 5, resp(8)),
		}, ""},
		{"event of a write that certainly failed", []*history.WatchSegment{seg(0, "kv/d", 5, resp(9, ev("put", "kv/d", "d1", 9)))}, "certainly failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, vs := CheckWatches(writes, tt.segments)
			require.Positive(t, st.Checked)
			if tt.problem == "" {
				require.Empty(t, vs)
				return
			}
			require.NotEmpty(t, vs)
			var found bool
			for _, v := range vs {
				found = found || strings.Contains(v.Summary, tt.problem)
			}
			require.True(t, found, "want %q in %v", tt.problem, vs)
		})
	}
}
