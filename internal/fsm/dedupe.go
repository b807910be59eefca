package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/google/btree"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// These bounds are part of the replicated state's semantics, so they are
// constants rather than configuration: every member must apply them alike.
//
// A client's results are kept while they are younger than DedupeMinAgeNanos
// or among its DedupeWindow most recent, and never more than DedupeMaxWindow
// of them: a retry within 30 seconds is recognised unless the client wrote
// more than DedupeMaxWindow times in between.
const (
	// DedupeWindow is how many recent results are kept per client
	// whatever their age.
	DedupeWindow = 1024
	// DedupeMaxWindow caps the results kept per client.
	DedupeMaxWindow = 65536
	// DedupeMinAgeNanos is how long a result is kept, within the cap, on
	// the state machine's elapsed clock (time measured by leaders between
	// commands of one term: a leader's clock offset cannot shorten it).
	DedupeMinAgeNanos = int64(30 * 1e9)
	// DedupeIdleNanos is how long a client's results are remembered after
	// its last write, on the elapsed clock.
	DedupeIdleNanos = int64(15 * 60 * 1e9)
	// sweepEvery is how many indexes pass between housekeeping sweeps.
	sweepEvery = 4096
)

const dedupeSection = "dedupe"

type dedupeEntry struct {
	client string
	req    uint64
	at     int64
	result *internalv1.Result
}

func dedupeLess(a, b *dedupeEntry) bool {
	if c := strings.Compare(a.client, b.client); c != 0 {
		return c < 0
	}
	return a.req < b.req
}

type dedupeClient struct {
	lastSeen int64
	count    uint64
}

// dedupe remembers the results of recent client writes. Entries live in a
// B-tree ordered by (client, request ID) so that a snapshot is an O(1) lazy
// clone and a client's oldest entry is its first.
type dedupe struct {
	tree    *btree.BTreeG[*dedupeEntry]
	clients map[string]*dedupeClient
}

func newDedupe() *dedupe {
	return &dedupe{tree: btree.NewG(32, dedupeLess), clients: map[string]*dedupeClient{}}
}

func (d *dedupe) lookup(client string, req uint64, now int64) (*internalv1.Result, bool) {
	e, ok := d.tree.Get(&dedupeEntry{client: client, req: req})
	if !ok {
		return nil, false
	}
	if c := d.clients[client]; c != nil {
		c.lastSeen = max(c.lastSeen, now)
	}
	return e.result, true
}

func (d *dedupe) remember(client string, req uint64, res *internalv1.Result, now int64) {
	c := d.clients[client]
	if c == nil {
		c = &dedupeClient{}
		d.clients[client] = c
	}
	c.lastSeen = max(c.lastSeen, now)
	if _, existed := d.tree.ReplaceOrInsert(&dedupeEntry{client: client, req: req, at: now, result: res}); !existed {
		c.count++
	}
	for c.count > DedupeWindow {
		var oldest *dedupeEntry
		d.tree.AscendGreaterOrEqual(&dedupeEntry{client: client}, func(e *dedupeEntry) bool {
			oldest = e
			return false
		})
		if oldest == nil || oldest.client != client {
			break
		}
		if c.count <= DedupeMaxWindow && oldest.at > now-DedupeMinAgeNanos {
			break
		}
		d.tree.Delete(oldest)
		c.count--
	}
}

// sweep forgets clients idle since before cutoff. The order of deletion does
// not matter: every idle client goes.
func (d *dedupe) sweep(cutoff int64) {
	for id, c := range d.clients {
		if c.lastSeen >= cutoff {
			continue
		}
		var victims []*dedupeEntry
		d.tree.AscendGreaterOrEqual(&dedupeEntry{client: id}, func(e *dedupeEntry) bool {
			if e.client != id {
				return false
			}
			victims = append(victims, e)
			return true
		})
		for _, e := range victims {
			d.tree.Delete(e)
		}
		delete(d.clients, id)
	}
}

func (d *dedupe) len() int { return d.tree.Len() }

func (d *dedupe) capture() (uint64, func(*record.Writer) error) {
	tree := d.tree.Clone()
	clients := make([]*internalv1.DedupeClient, 0, len(d.clients))
	for id, c := range d.clients {
		clients = append(clients, &internalv1.DedupeClient{ClientId: id, LastSeenUnixNano: c.lastSeen, Count: c.count})
	}
	sortClients(clients)
	return uint64(len(clients)), func(w *record.Writer) error {
		for _, c := range clients {
			if err := w.Write(c); err != nil {
				return err
			}
		}
		// Entries follow the clients, in tree order, closed by the count
		// implied by the clients' counts.
		var err error
		tree.Ascend(func(e *dedupeEntry) bool {
			err = w.Write(&internalv1.DedupeRecord{ClientId: e.client, RequestId: e.req, AtUnixNano: e.at, Result: e.result})
			return err == nil
		})
		return err
	}
}

func (d *dedupe) restore(n uint64, r *record.Reader) error {
	fresh := newDedupe()
	var entries uint64
	for i := uint64(0); i < n; i++ {
		var c internalv1.DedupeClient
		if err := r.Read(&c); err != nil {
			return fmt.Errorf("dedupe client %d: %w", i, err)
		}
		fresh.clients[c.GetClientId()] = &dedupeClient{lastSeen: c.GetLastSeenUnixNano(), count: c.GetCount()}
		entries += c.GetCount()
	}
	for i := uint64(0); i < entries; i++ {
		var rec internalv1.DedupeRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("dedupe record %d: %w", i, err)
		}
		if _, ok := fresh.clients[rec.GetClientId()]; !ok {
			return fmt.Errorf("dedupe record %d: %w: unknown client", i, record.ErrCorrupt)
		}
		fresh.tree.ReplaceOrInsert(&dedupeEntry{client: rec.GetClientId(), req: rec.GetRequestId(), at: rec.GetAtUnixNano(), result: rec.GetResult()})
	}
	if uint64(fresh.tree.Len()) != entries {
		return fmt.Errorf("%w: dedupe holds %d entries, clients count %d", record.ErrCorrupt, fresh.tree.Len(), entries)
	}
	*d = *fresh
	return nil
}

func sortClients(cs []*internalv1.DedupeClient) {
	slices.SortFunc(cs, func(a, b *internalv1.DedupeClient) int { return cmp.Compare(a.GetClientId(), b.GetClientId()) })
}
