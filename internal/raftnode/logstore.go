package raftnode

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/concord-dev/concord/internal/raftlog"
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

// watchedLogs tells onFailure, once, that the log store failed for good.
type watchedLogs struct {
	raft.LogStore
	once      sync.Once
	onFailure func(error)
}

func watchLogs(s raft.LogStore, onFailure func(error)) raft.LogStore {
	if onFailure == nil {
		return s
	}
	return &watchedLogs{LogStore: s, onFailure: onFailure}
}

func (s *watchedLogs) check(err error) error {
	if errors.Is(err, raftlog.ErrFailed) {
		s.once.Do(func() { s.onFailure(err) })
	}
	return err
}

func (s *watchedLogs) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *watchedLogs) StoreLogs(logs []*raft.Log) error { return s.check(s.LogStore.StoreLogs(logs)) }

func (s *watchedLogs) DeleteRange(min, max uint64) error {
	return s.check(s.LogStore.DeleteRange(min, max))
}

// IsMonotonic passes the store's answer on.
func (s *watchedLogs) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
