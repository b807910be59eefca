package kv

import (
	"sort"
	"sync"

	"github.com/concord-dev/concord/internal/errs"
)

// History keeps the most recent events, bounded by count and bytes, for
// watches. It is derived state: not part of snapshots or the state hash. A
// member restored from a snapshot keeps history only from the snapshot's
// index on, and a watch from before that gets ErrCompacted.
//
// History is safe for concurrent use: the state machine appends while
// watchers read.
type History struct {
	mu        sync.Mutex
	ring      []Event
	head, n   int
	bytes     int64
	maxEvents int
	maxBytes  int64
	compacted uint64
	applied   uint64
	notify    chan struct{}
}

// NewHistory returns an empty history that keeps at most maxEvents events
// and about maxBytes bytes.
func NewHistory(maxEvents int, maxBytes int64) *History {
	if maxEvents < 1 {
		maxEvents = 1
	}
	return &History{maxEvents: maxEvents, maxBytes: maxBytes, notify: make(chan struct{})}
}

// Reset drops every event and marks every revision up to rev compacted.
func (h *History) Reset(rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring, h.head, h.n, h.bytes = nil, 0, 0, 0
	h.compacted, h.applied = rev, rev
	h.wakeLocked()
}

func (h *History) at(i int) *Event { return &h.ring[(h.head+i)%len(h.ring)] }

// Append adds events in revision order. It does not wake watchers: Advance
// does, once the whole apply batch is in.
func (h *History) Append(evs []Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		if h.n == len(h.ring) {
			h.grow()
		}
		if h.n == len(h.ring) {
			h.dropOldest()
		}
		*h.at(h.n) = e
		h.n++
		h.bytes += e.size()
		for h.n > 1 && h.maxBytes > 0 && h.bytes > h.maxBytes {
			h.dropOldest()
		}
	}
}

func (h *History) grow() {
	if len(h.ring) >= h.maxEvents {
		return
	}
	size := min(max(2*len(h.ring), 1024), h.maxEvents)
	ring := make([]Event, size)
	for i := 0; i < h.n; i++ {
		ring[i] = *h.at(i)
	}
	h.ring, h.head = ring, 0
}

func (h *History) dropOldest() {
	e := h.at(0)
	h.compacted = max(h.compacted, e.Rev)
	h.bytes -= e.size()
	*e = Event{}
	h.head = (h.head + 1) % len(h.ring)
	h.n--
}

// Advance records that every event up to rev has been appended and wakes
// the watchers.
func (h *History) Advance(rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > h.applied {
		h.applied = rev
	}
	h.wakeLocked()
}

func (h *History) wakeLocked() {
	close(h.notify)
	h.notify = make(chan struct{})
}

// Compacted returns the highest revision no longer available.
func (h *History) Compacted() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.compacted
}

// Available fails with ErrCompacted if the events from revision from on
// are no longer all held.
func (h *History) Available(from uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.available(from)
}

func (h *History) available(from uint64) error {
	if from <= h.compacted {
		return errs.Wrapf(ErrCompacted, "revision %d is compacted; the oldest available is %d", from, h.compacted+1)
	}
	return nil
}

// Applied returns the revision through which events have been appended.
func (h *History) Applied() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.applied
}

// Read returns the events in span with revisions >= from, in order and in
// whole revisions, stopping after about max events. through is the revision
// through which every matching event has now been returned: the next read
// starts at through+1. wait is closed when more may be available. A from at
// or below the compacted revision fails with ErrCompacted.
func (h *History) Read(from uint64, sp Span, max int) (evs []Event, through uint64, wait <-chan struct{}, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.available(from); err != nil {
		return nil, 0, nil, err
	}
	through = h.applied
	if from > h.applied {
		return nil, from - 1, h.notify, nil
	}
	i := sort.Search(h.n, func(i int) bool { return h.at(i).Rev >= from })
	for ; i < h.n; i++ {
		e := h.at(i)
		if e.Rev > h.applied {
			// Appended, but the batch is not complete yet: Advance has
			// not run. Returning it now would deliver it again after.
			break
		}
		if max > 0 && len(evs) >= max && e.Rev != evs[len(evs)-1].Rev {
			through = evs[len(evs)-1].Rev
			break
		}
		if sp.Contains(e.Item.Key) {
			evs = append(evs, *e)
		}
	}
	return evs, through, h.notify, nil
}
