package raftnode

import (
	"time"

	"github.com/hashicorp/raft"
)

// measuredLogs times the appends of any log store for the metrics.
type measuredLogs struct {
	raft.LogStore
	m *Metrics
}

func measureLogs(s raft.LogStore, m *Metrics) raft.LogStore {
	if m == nil {
		return s
	}
	return &measuredLogs{LogStore: s, m: m}
}

func (s *measuredLogs) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *measuredLogs) StoreLogs(logs []*raft.Log) error {
	start := time.Now()
	err := s.LogStore.StoreLogs(logs)
	if err == nil {
		s.m.appendSeconds.Observe(time.Since(start).Seconds())
		s.m.appendEntries.Observe(float64(len(logs)))
	}
	return err
}

// IsMonotonic passes the store's answer on: hashicorp/raft clears a
// monotonic log after installing a snapshot instead of leaving a gap.
func (s *measuredLogs) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
