package client

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// Event is one change of a key.
type Event = concordv1.Event

// Event types.
const (
	EventPut    = concordv1.Event_TYPE_PUT
	EventDelete = concordv1.Event_TYPE_DELETE
)

// WatchResponse is what a watch delivers: the events of one or more whole
// revisions, in order, or a progress report, or a final error.
type WatchResponse struct {
	Events []*Event
	// Revision: every matching event at or below it has been delivered.
	Revision uint64
	// Progress marks a response without events that only reports
	// Revision.
	Progress bool
	// Err is set on the last response of a watch that cannot go on:
	// ErrCompacted (resume from a fresh read), ErrInvalidArgument, ...
	Err error
}

// WatchChan delivers a watch's responses. It is closed when the watch ends:
// its ctx ends, the client closes, or a response with Err was delivered.
type WatchChan <-chan WatchResponse

// Watch streams the changes of a key (or with WithPrefix or WithRange, a
// range) from WithRevision, or from the next revision. When a member fails
// or the connection breaks, the watch resumes on another member from the
// revision after the last one delivered: no event is lost or repeated. A
// stream the member ends with Canceled or DeadlineExceeded while ctx is live
// is such a failure (a killed member cancels its own streams), not the end
// of the watch.
//
// Without WithRevision the watch starts after the revision the member has
// when the stream opens. If that first stream fails before it says which
// revision that is (its member paused, say), the watch resumes after the
// last revision this client had seen when Watch was called: it may then
// deliver some events from before the call, but misses none after it (it
// asked "from now" again, on a member that had moved on, and skipped the
// writes in between).
func (c *Client) Watch(ctx context.Context, key string, opts ...OpOption) WatchChan {
	o := applyOpts(opts)
	ch := make(chan WatchResponse, 64)
	go c.runWatch(ctx, key, o, c.LastRevision(), ch)
	return ch
}

// runWatch serves a watch; seen is the client's last revision when it was
// called, the floor for a watch from now whose first stream fails early.
func (c *Client) runWatch(ctx context.Context, key string, o opOptions, seen uint64, ch chan<- WatchResponse) {
	defer close(ch)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	next := o.startRev
	deliver := func(r WatchResponse) bool {
		select {
		case ch <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := 50 * time.Millisecond
	// compactedAt counts members that no longer hold the history from the
	// current position; the watch gives up only when every member says so.
	compactedAt := map[*endpoint]bool{}
	for {
		ep := c.pick()
		req := &concordv1.WatchRequest{Key: []byte(key), RangeEnd: o.rangeEnd, Prefix: o.prefix,
			StartRevision: next, PrevKv: o.prevKV, ProgressNotify: o.progress}
		stream, err := ep.kv.Watch(ctx, connect.NewRequest(req))
		if err == nil {
			for stream.Receive() {
				backoff = 50 * time.Millisecond
				msg := stream.Msg()
				rev := msg.GetHeader().GetRevision()
				if len(msg.GetEvents()) > 0 || rev >= next {
					// The watch moved on: the members that had
					// compacted its old position may serve the new one.
					// (Not on the opening header, which names next-1 at
					// most: the watch has not moved.)
					clear(compactedAt)
				}
				c.observe(msg.GetHeader())
				if next == 0 || rev+1 > next {
					next = rev + 1
				}
				if len(msg.GetEvents()) == 0 {
					if o.progress && !deliver(WatchResponse{Revision: rev, Progress: true}) {
						return
					}
					continue
				}
				if !deliver(WatchResponse{Events: msg.GetEvents(), Revision: rev}) {
					return
				}
			}
			err = stream.Err()
			_ = stream.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if next == 0 && seen > 0 {
			next = seen + 1
		}
		err = fromWire(err)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// The watch's ctx is live: the member (or a proxy) ended
			// the stream, not the caller. A member that is killed
			// cancels its own requests, and its stream ends with
			// Canceled before the connection drops. The watch resumes
			// elsewhere, as when the connection breaks.
			err = nil
		}
		if errors.Is(err, ErrCompacted) {
			// A member restored from a snapshot (or restarted) keeps
			// history only from there; another member may still hold it.
			compactedAt[ep] = true
			if len(compactedAt) < len(c.endpoints) {
				c.moveOff(ep, compactedAt)
				continue
			}
		}
		if err != nil && !errors.Is(err, ErrCompacted) && (retryable(err, true) || errors.Is(err, ErrUnavailable)) {
			err = nil
		}
		if err != nil {
			deliver(WatchResponse{Err: err, Revision: next - 1})
			return
		}
		c.failover(ep)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
