// Copyright (c) HashiCorp, Inc.
// SPDX-License-Identifier: MPL-2.0

// This file is concord's addition to hashicorp/raft v1.8.0; see
// CONCORD-PATCHES.md for why and for every change made around it.

package raft

import (
	"sync"
	"time"

	"github.com/hashicorp/go-metrics"
)

// maxLogWriterBatch bounds how many entries one StoreLogs call of the
// logWriter carries.
const maxLogWriterBatch = 4096

// logWriter writes a leader's new entries to its own log store on a
// goroutine of its own, so that the leader loop goes on collecting the next
// batch while the disk works, and the followers receive a batch while the
// leader is still writing it (the parallel leader write of the Raft thesis,
// section 10.2.1).
//
// Safety rests on one rule: the leader counts itself in the commitment for
// an index only once the index is durable in its own log store (the writer
// calls commitment.match after StoreLogs returns). Entries that are
// dispatched but not yet durable ("staged") are served from memory to the
// replicators and to the leader's own apply; a committed entry is therefore
// always durable on a majority, whether or not the leader is part of it.
//
// Every batch dispatched while a write is in progress joins the next write,
// so a slow disk sees fewer, larger writes rather than a longer queue (group
// commit).
type logWriter struct {
	r          *Raft
	commitment *commitment

	mu   sync.Mutex
	cond *sync.Cond // signalled when durable advances or the writer ends
	// staged holds the dispatched entries that are not yet durable, in
	// index order and contiguous; queue is the suffix of staged that is not
	// yet handed to StoreLogs.
	staged  []*Log
	queue   []*Log
	last    uint64 // last dispatched index
	durable uint64 // last index known durable in the log store
	ended   bool   // the writer goroutine has returned

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	// errCh carries a failed write to the leader loop, which steps down.
	errCh chan error
}

func newLogWriter(r *Raft, c *commitment) *logWriter {
	// The end of the log counts the last snapshot: after a restore or a
	// compaction the log store may end below it, and the next entry follows
	// the snapshot.
	last := r.getLastIndex()
	w := &logWriter{
		r:          r,
		commitment: c,
		last:       last,
		durable:    last,
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		errCh:      make(chan error, 1),
	}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// lastIndex returns the last dispatched index: the end of the leader's log
// as replication sees it.
func (w *logWriter) lastIndex() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// append stages entries that carry the indexes following lastIndex and
// queues them for writing. It is called from the leader loop only.
func (w *logWriter) append(logs []*Log) {
	if len(logs) == 0 {
		return
	}
	w.mu.Lock()
	w.staged = append(w.staged, logs...)
	w.queue = append(w.queue, logs...)
	w.last = logs[len(logs)-1].Index
	w.mu.Unlock()
	asyncNotifyCh(w.kick)
}

// getLog copies a staged entry into out and reports whether idx was staged.
func (w *logWriter) getLog(idx uint64, out *Log) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.staged) == 0 {
		return false
	}
	first := w.staged[0].Index
	if idx < first || idx > w.last {
		return false
	}
	*out = *w.staged[idx-first]
	return true
}

// flush waits until every dispatched entry is durable or the writer has
// ended. The leader loop calls it before handing the log to code that reads
// or rewrites it as a whole (an RPC from another member, a user snapshot
// restore); as the leader loop is the only producer, nothing new is queued
// meanwhile.
func (w *logWriter) flush() {
	w.mu.Lock()
	for w.durable < w.last && !w.ended {
		w.cond.Wait()
	}
	w.mu.Unlock()
}

// reset moves the end of the log after a user snapshot restore burned an
// index; the writer must be flushed.
func (w *logWriter) reset(index uint64) {
	w.mu.Lock()
	w.staged, w.queue = nil, nil
	w.last, w.durable = index, index
	w.mu.Unlock()
}

// shutdown stops the writer after the write in progress, if any, and waits
// for it. Queued entries that were not written are dropped: they were not
// acknowledged, and if a majority of followers holds them they may still be
// committed by a later leader. The leader loop calls it on step-down before
// the log is used as a follower's.
func (w *logWriter) shutdown() {
	close(w.stop)
	<-w.done
}

func (w *logWriter) run() {
	defer func() {
		w.mu.Lock()
		w.ended = true
		w.cond.Broadcast()
		w.mu.Unlock()
		close(w.done)
	}()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			n := len(w.queue)
			if n > maxLogWriterBatch {
				n = maxLogWriterBatch
			}
			batch := w.queue[:n:n]
			w.queue = w.queue[n:]
			w.mu.Unlock()
			if n == 0 {
				break
			}
			start := time.Now()
			if err := w.r.logs.StoreLogs(batch); err != nil {
				w.r.logger.Error("failed to commit logs", "error", err)
				select {
				case w.errCh <- err:
				default:
				}
				return
			}
			metrics.MeasureSince([]string{"raft", "leader", "logWriter", "storeLogs"}, start)
			metrics.SetGauge([]string{"raft", "leader", "logWriter", "batchLogs"}, float32(n))
			last := batch[n-1]
			w.r.setLastLog(last.Index, last.Term)
			w.mu.Lock()
			w.durable = last.Index
			drop := 0
			for drop < len(w.staged) && w.staged[drop].Index <= last.Index {
				drop++
			}
			// Let the dropped prefix be collected.
			clear(w.staged[:drop])
			w.staged = w.staged[drop:]
			w.cond.Broadcast()
			w.mu.Unlock()
			w.commitment.match(w.r.localID, last.Index)
		}
	}
}
