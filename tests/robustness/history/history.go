// Package history records what the clients of a robustness run did and saw:
// every operation with its invocation and completion on one monotonic clock,
// and every watch stream. The checkers read it after the run; on failure it
// is written to disk (JSON lines) next to the run's other artifacts.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// Clock is the run's single monotonic clock. Its readings are nanoseconds
// since the clock was made, taken from Go's monotonic clock, so they never
// go backwards and are comparable across goroutines.
type Clock struct{ base time.Time }

// NewClock starts a clock at zero.
func NewClock() *Clock { return &Clock{base: time.Now()} }

// Now returns the nanoseconds elapsed since the clock started.
func (c *Clock) Now() int64 { return int64(time.Since(c.base)) }

// At converts a time (taken with time.Now, so carrying a monotonic
// reading) to a reading of the clock.
func (c *Clock) At(t time.Time) int64 { return int64(t.Sub(c.base)) }

// Status is what a client learned of an operation's outcome.
type Status string

const (
	// OK: the operation completed and its output is known.
	OK Status = "ok"
	// Fail: the operation certainly had no effect (reads that failed,
	// requests the server refused before doing anything).
	Fail Status = "fail"
	// Unknown: the operation may or may not have taken effect (a write
	// whose call timed out or lost its connection). It stays in the
	// history as possibly applied at any time after its invocation.
	Unknown Status = "unknown"
)

// Kind names an operation. Workloads define their own kinds.
type Kind string

// Op is one client operation. Fields not used by a kind stay zero.
type Op struct {
	// ID numbers the operation in the order it completed.
	ID int `json:"id"`
	// Process is the logical client that issued it. A client whose
	// operation ended with an unknown outcome continues under a new
	// process ID, so every process has at most one open operation.
	Process int `json:"process"`
	// Workload names the workload that issued it.
	Workload string `json:"workload"`
	Kind     Kind   `json:"kind"`
	// Call and Return are readings of the run's Clock.
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	Status Status `json:"status"`
	// Err is the error text of a failed or unknown operation.
	Err string `json:"err,omitempty"`
	// Endpoint is the member the client was pinned to, if any.
	Endpoint string `json:"endpoint,omitempty"`

	// Key-value fields.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"` // written (put, cas new) or read (get)
	Old   string `json:"old,omitempty"`   // expected value of a cas
	// Found reports whether a get found the key.
	Found bool `json:"found,omitempty"`
	// Succeeded reports whether a cas's compare held.
	Succeeded bool `json:"succeeded,omitempty"`
	// Rev is the revision of a write, or the mod revision a get read.
	Rev uint64 `json:"rev,omitempty"`
	// Deleted is the number of keys a delete removed.
	Deleted int64 `json:"deleted,omitempty"`

	// Session fields.
	Session int64 `json:"session,omitempty"`
	TTL     int64 `json:"ttl_ms,omitempty"`
	// Expired reports that the server said the session does not exist.
	Expired bool `json:"expired,omitempty"`
	// Deadline is, for sessions kept alive by the SDK, the SDK's
	// Session.Deadline() sampled at the call, as a Clock reading.
	Deadline int64 `json:"deadline,omitempty"`

	// Lock fields (the lock's name is Key).
	//
	// Owner is the lock owner an operation acts for: the owner a grant
	// was requested for, released as, or written under (fenced writes);
	// for an inspection, the holder it read.
	Owner string `json:"owner,omitempty"`
	// Token is the fencing token of a grant: granted, released, written
	// under, or read by an inspection.
	Token uint64 `json:"token,omitempty"`
	// Quota reports that an acquire was refused over the cluster's lock
	// limit (QUOTA_EXCEEDED): it took nothing.
	Quota bool `json:"quota,omitempty"`
	// Queued is, for a waiting acquire, when the server's first answer,
	// QUEUED (the request took a place in the queue), reached the client;
	// 0 when none did (granted at once, refused, or no answer).
	Queued int64 `json:"queued,omitempty"`
	// Holders is the number of holders an inspection read.
	Holders int `json:"holders,omitempty"`
	// Self is, for an inspection, the owner of the grant the inspecting
	// client held when it inspected (its Deadline then vouches for that
	// grant's session).
	Self string `json:"self,omitempty"`
	// Shared marks a read claim of a read-write lock: an acquire to
	// read, or the release of a read grant (the lock-limit workload's).
	Shared bool `json:"shared,omitempty"`
	// Locks is, for each part of a call on several locks (an acquire or
	// a release of all of them at once), the number of locks; 0 for a
	// call on one.
	Locks int `json:"locks,omitempty"`
	// HoldMs is the hold time an acquire asked for (Redisson's
	// leaseTime), in milliseconds.
	HoldMs int64 `json:"hold_ms,omitempty"`
	// Entry is the element a fenced append adds to a shared list (Value
	// is then the whole list it writes).
	Entry string `json:"entry,omitempty"`
	// Lost reports, for a conversion (a read-write upgrade or downgrade)
	// that did not succeed, that the server answered LOST: the grant it
	// converted had ended (force-released, its hold time or its session
	// over), and the conversion took nothing. Histories written before
	// the field existed record such an answer as an unknown outcome.
	Lost bool `json:"lost,omitempty"`

	// ID fields (a segment tag is Key).
	//
	// Stream names the sequence of IDs an operation belongs to, whose
	// order is checked: one client, one generator, one member's buffer.
	Stream string `json:"stream,omitempty"`
	// Count is the number of IDs asked for.
	Count int64 `json:"count,omitempty"`
	// IDs are the IDs returned, in the order they were returned. A
	// segment allocation returns [IDs[0], IDs[1]).
	IDs []int64 `json:"ids,omitempty"`
}

// Duration returns how long the operation took.
func (o Op) Duration() time.Duration { return time.Duration(o.Return - o.Call) }

// String renders the operation as JSON.
func (o Op) String() string {
	b, _ := json.Marshal(o)
	return string(b)
}

// Event is one event of a watch response.
type Event struct {
	Type  string `json:"type"` // "put" or "delete"
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Rev   uint64 `json:"rev"`
}

// WatchResponse is one response of a watch stream.
type WatchResponse struct {
	At       int64   `json:"at"`
	Revision uint64  `json:"revision"`
	Events   []Event `json:"events,omitempty"`
	Err      string  `json:"err,omitempty"`
}

// WatchSegment is one uninterrupted watch: from StartRev until the stream
// ended (with an error such as ErrCompacted) or the run stopped it. The SDK
// resumes across reconnects on its own, so a segment spans member failures;
// a new segment begins only after the SDK gave up with an error.
type WatchSegment struct {
	Watcher  int    `json:"watcher"`
	Segment  int    `json:"segment"`
	Endpoint string `json:"endpoint,omitempty"`
	// Prefix is the watched key prefix.
	Prefix   string          `json:"prefix"`
	StartRev uint64          `json:"start_rev"`
	Started  int64           `json:"started"`
	Ended    int64           `json:"ended"`
	Err      string          `json:"err,omitempty"`
	Resps    []WatchResponse `json:"responses"`
}

// EndRev is the revision through which the segment delivered every matching
// event: the revision of its last response, or StartRev-1 if none came.
func (s *WatchSegment) EndRev() uint64 {
	if n := len(s.Resps); n > 0 && s.Resps[n-1].Revision >= s.StartRev {
		return s.Resps[n-1].Revision
	}
	return s.StartRev - 1
}

// Recorder collects a run's history. It is safe for concurrent use.
type Recorder struct {
	clock *Clock

	mu       sync.Mutex
	ops      []Op
	segments []*WatchSegment
	grants   []*GrantTrack
	process  int
}

// NewRecorder returns an empty recorder on clock.
func NewRecorder(clock *Clock) *Recorder { return &Recorder{clock: clock} }

// Clock returns the recorder's clock.
func (r *Recorder) Clock() *Clock { return r.clock }

// Now reads the clock.
func (r *Recorder) Now() int64 { return r.clock.Now() }

// NewProcess returns a fresh logical process ID.
func (r *Recorder) NewProcess() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.process
	r.process++
	return p
}

// Add appends a completed operation and returns it with its ID set.
func (r *Recorder) Add(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.ID = len(r.ops)
	r.ops = append(r.ops, op)
	return op
}

// AddSegment registers a watch segment; the caller fills it in while it
// runs and must not touch it after Snapshot.
func (r *Recorder) AddSegment(s *WatchSegment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.segments = append(r.segments, s)
}

// Snapshot returns the history recorded so far. Call it once the clients
// stopped.
func (r *Recorder) Snapshot() *History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := &History{Ops: slices.Clone(r.ops), Watches: slices.Clone(r.segments)}
	for _, t := range r.grants {
		h.Grants = append(h.Grants, t.Snapshot())
	}
	return h
}

// History is a recorded run.
type History struct {
	Ops     []Op
	Watches []*WatchSegment
	// Grants are the grants the SDK handed to the clients, as the clients
	// saw them end (see Grant).
	Grants []Grant
}

// Of returns the operations of one workload.
func (h *History) Of(workload string) []Op {
	var out []Op
	for _, o := range h.Ops {
		if o.Workload == workload {
			out = append(out, o)
		}
	}
	return out
}

// Counts returns how many operations ended ok, failed and unknown.
func (h *History) Counts() (ok, fail, unknown int) {
	for _, o := range h.Ops {
		switch o.Status {
		case OK:
			ok++
		case Fail:
			fail++
		case Unknown:
			unknown++
		}
	}
	return ok, fail, unknown
}

// record is one line of a history file.
type record struct {
	Op    *Op           `json:"op,omitempty"`
	Watch *WatchSegment `json:"watch,omitempty"`
	Grant *Grant        `json:"grant,omitempty"`
}

// Write writes the history as JSON lines: one operation or watch segment
// per line.
func (h *History) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range h.Ops {
		if err := enc.Encode(record{Op: &h.Ops[i]}); err != nil {
			return err
		}
	}
	for _, s := range h.Watches {
		if err := enc.Encode(record{Watch: s}); err != nil {
			return err
		}
	}
	for i := range h.Grants {
		if err := enc.Encode(record{Grant: &h.Grants[i]}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// OfGrants returns the grants of one workload.
func (h *History) OfGrants(workload string) []Grant {
	var out []Grant
	for _, g := range h.Grants {
		if g.Workload == workload {
			out = append(out, g)
		}
	}
	return out
}

// WriteFile writes the history to path.
func (h *History) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := h.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Read reads a history written by Write.
func Read(r io.Reader) (*History, error) {
	h := &History{}
	dec := json.NewDecoder(r)
	for n := 1; ; n++ {
		var rec record
		if err := dec.Decode(&rec); err == io.EOF {
			return h, nil
		} else if err != nil {
			return nil, fmt.Errorf("history line %d: %w", n, err)
		}
		switch {
		case rec.Op != nil:
			h.Ops = append(h.Ops, *rec.Op)
		case rec.Watch != nil:
			h.Watches = append(h.Watches, rec.Watch)
		case rec.Grant != nil:
			h.Grants = append(h.Grants, *rec.Grant)
		}
	}
}
