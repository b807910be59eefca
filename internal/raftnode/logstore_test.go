package raftnode

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
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
