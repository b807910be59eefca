package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// maxCoalescedIDs bounds the IDs one coalesced NextIDs call asks for. It
// stays below the server's default --max-ids-per-call (10,000); a server
// configured lower refuses a coalesced call, and its callers then ask alone.
const maxCoalescedIDs = 1000

// errAskAlone tells the callers of a refused coalesced call to ask alone.
var errAskAlone = errors.New("concord: ask alone")

// idRequest is one NextIDs call waiting for a coalesced call.
type idRequest struct {
	n    int64
	ids  []int64
	err  error
	done chan struct{}
}

// idCoalescer turns concurrent NextIDs calls for one tag into one call for
// their sum, like KV.Batch does for KV calls: the calls that queued while
// the previous call was in flight go out together, so a lone caller goes
// out at once and the calls per second the server sees stay bounded by
// its round trip, not by the number of callers. Each caller gets its own
// consecutive slice of the IDs, in queue order.
type idCoalescer struct {
	c   *Client
	tag string

	mu     sync.Mutex
	queue  []*idRequest
	queued int64 // IDs the queue asks for
	flying int   // calls in flight
}

// maxIDFlights bounds the coalesced calls of one tag in flight at once: a
// second starts only when the queue holds more than one call can carry.
const maxIDFlights = 4

func (c *Client) coalescer(tag string) *idCoalescer {
	c.idsMu.Lock()
	defer c.idsMu.Unlock()
	if c.idTags == nil {
		c.idTags = make(map[string]*idCoalescer)
	}
	co := c.idTags[tag]
	if co == nil {
		co = &idCoalescer{c: c, tag: tag}
		c.idTags[tag] = co
	}
	return co
}

// next queues a request for n IDs and waits for it. If no call is in
// flight, the caller sends one for the queue itself.
func (co *idCoalescer) next(ctx context.Context, n int64) ([]int64, error) {
	r := &idRequest{n: n, done: make(chan struct{})}
	co.mu.Lock()
	co.queue = append(co.queue, r)
	co.queued += n
	if co.flying == 0 || (co.queued > maxCoalescedIDs && co.flying < maxIDFlights) {
		co.flying++
		co.mu.Unlock()
		go co.fly()
	} else {
		co.mu.Unlock()
	}
	select {
	case <-r.done:
		return r.ids, r.err
	case <-ctx.Done():
		// The IDs this request would have received are skipped, as a
		// crashed caller's would be: IDs are unique, not gap-free.
		return nil, ctx.Err()
	}
}

// fly sends coalesced calls until the queue is empty.
func (co *idCoalescer) fly() {
	for {
		co.mu.Lock()
		var total int64
		i := 0
		for ; i < len(co.queue); i++ {
			if i > 0 && total+co.queue[i].n > maxCoalescedIDs {
				break
			}
			total += co.queue[i].n
		}
		batch := co.queue[:i:i]
		co.queue = co.queue[i:]
		co.queued -= total
		if len(batch) == 0 {
			co.flying--
			co.mu.Unlock()
			return
		}
		co.mu.Unlock()

		ctx, cancel := context.WithTimeout(co.c.ctx, co.c.cfg.RetryTimeout)
		ids, err := co.c.nextIDs(ctx, co.tag, total)
		cancel()
		if err == nil && int64(len(ids)) != total {
			err = fmt.Errorf("%w: asked for %d IDs, got %d", ErrUnavailable, total, len(ids))
		}
		if err != nil && len(batch) > 1 && errors.Is(err, ErrInvalidArgument) {
			err = errAskAlone
		}
		for _, r := range batch {
			if err == nil {
				r.ids, ids = ids[:r.n:r.n], ids[r.n:]
			}
			r.err = err
			close(r.done)
		}
	}
}
