package raftnode

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/concord-dev/concord/internal/raftlog"
)

// The measuring wrapper must not hide whether a store is monotonic: raft
// clears a monotonic log after a snapshot install, and seglog refuses the
// overlapping appends it would otherwise get.
func TestMeasuredLogsKeepMonotonic(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for _, kind := range []string{LogStoreSeglog, LogStoreBolt} {
		st, _, err := openStores(t.TempDir(), kind, nil)
		if err != nil {
			t.Fatal(err)
		}
		mono, ok := measureLogs(st.logs, m).(raft.MonotonicLogStore)
		if !ok {
			t.Fatalf("%s: the wrapper is not a MonotonicLogStore", kind)
		}
		if want := kind == LogStoreSeglog; mono.IsMonotonic() != want {
			t.Errorf("%s: IsMonotonic %v, want %v", kind, mono.IsMonotonic(), want)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// failingLogs is a log store whose appends and deletions fail with err.
type failingLogs struct {
	*raft.InmemStore
	err error
}

func (s *failingLogs) StoreLogs([]*raft.Log) error      { return s.err }
func (s *failingLogs) DeleteRange(uint64, uint64) error { return s.err }

// A log store that failed for good (raftlog.ErrFailed) is reported once, so
// that the member stops; other errors (a refused append) are not.
func TestWatchedLogsReportAFailedStoreOnce(t *testing.T) {
	var got []error
	inner := &failingLogs{InmemStore: raft.NewInmemStore(), err: errors.New("raftlog: append overlaps the log")}
	s := watchLogs(inner, func(err error) { got = append(got, err) })
	_ = s.StoreLogs([]*raft.Log{{Index: 1}})
	if len(got) != 0 {
		t.Fatalf("an ordinary error was reported as a failure: %v", got)
	}
	inner.err = fmt.Errorf("sync: %w", raftlog.ErrFailed)
	if err := s.StoreLogs([]*raft.Log{{Index: 1}}); !errors.Is(err, raftlog.ErrFailed) {
		t.Fatalf("StoreLogs: %v, want the store's error", err)
	}
	_ = s.DeleteRange(1, 2)
	_ = s.StoreLog(&raft.Log{Index: 1})
	if len(got) != 1 || !errors.Is(got[0], raftlog.ErrFailed) {
		t.Fatalf("failures reported: %v, want ErrFailed once", got)
	}
	if _, ok := s.(raft.MonotonicLogStore); !ok {
		t.Fatal("the wrapper hides MonotonicLogStore")
	}
}
