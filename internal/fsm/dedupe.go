package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

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

// dedupeEntry is one remembered result.
type dedupeEntry struct {
	req    uint64
	at     int64
	result storedResult
}

// inlineResult is the largest encoded result a dedupe entry holds in
// place. Lock, session and most KV results encode in fewer bytes.
const inlineResult = 30

// storedResult is a result kept in its wire encoding, in place when it is
// small and in a byte slice otherwise. The table holds up to 65,536 results
// per client; kept as messages, each was three or four objects for the
// collector to trace (under load, a 3-member cluster's state machine held
// a million of them and the collector took a tenth of the CPU); encoded, a
// small one is none and a large one a single object without pointers.
type storedResult struct {
	n uint8
	// op is the field number of the operation (Command.op) answered, 0
	// when unknown (an entry restored from an older snapshot). It sits in
	// what would be padding.
	op     uint8
	inline [inlineResult]byte
	big    []byte
}

func storeResult(op uint8, res *internalv1.Result) storedResult {
	out := storedResult{op: op}
	size := res.SizeVT()
	if size > inlineResult {
		out.big = make([]byte, size)
		if _, err := res.MarshalToSizedBufferVT(out.big); err != nil {
			panic(fmt.Sprintf("fsm: encode a result: %v", err)) // a generated encoder does not fail on a sized buffer
		}
		return out
	}
	if _, err := res.MarshalToSizedBufferVT(out.inline[:size]); err != nil {
		panic(fmt.Sprintf("fsm: encode a result: %v", err))
	}
	out.n = uint8(size)
	return out
}

// load decodes the result. A result that cannot decode never went in: the
// bytes are this process's own encoding, and restore refuses a snapshot
// whose results do not decode back.
func (r *storedResult) load() *internalv1.Result {
	res, err := r.decode()
	if err != nil {
		panic(fmt.Sprintf("fsm: decode a remembered result: %v", err))
	}
	return res
}

func (r *storedResult) decode() (*internalv1.Result, error) {
	b := r.big
	if b == nil {
		b = r.inline[:r.n]
	}
	res := &internalv1.Result{}
	if err := res.UnmarshalVT(b); err != nil {
		return nil, err
	}
	return res, nil
}

// dedupeClient holds one client's remembered results, in request ID order:
// entries[head:] are live. Clients number request IDs in the order they
// issue them, so results nearly always arrive in order and are appended;
// the oldest ID, the first to go, is at the front.
type dedupeClient struct {
	id       string
	lastSeen int64
	entries  []dedupeEntry
	head     int
	// shared: a snapshot being written holds entries[head:len(entries)] as
	// they are now. Appends past them are safe; anything that writes over
	// them copies the slice first (own).
	shared bool
}

func (c *dedupeClient) live() []dedupeEntry { return c.entries[c.head:] }

func (c *dedupeClient) count() int { return len(c.entries) - c.head }

// find returns the position of req among the live entries, and whether it
// is there.
func (c *dedupeClient) find(req uint64) (int, bool) {
	live := c.live()
	// The newest entries are the likeliest: look at the end first.
	if n := len(live); n == 0 || live[n-1].req < req {
		return n, false
	} else if live[n-1].req == req {
		return n - 1, true
	}
	return slices.BinarySearchFunc(live, req, func(e dedupeEntry, req uint64) int { return cmp.Compare(e.req, req) })
}

// own gives the client a slice of its own if a snapshot shares it.
func (c *dedupeClient) own() {
	if c.shared {
		c.entries, c.head, c.shared = slices.Clone(c.live()), 0, false
	}
}

func (c *dedupeClient) insert(e dedupeEntry) (existed bool) {
	i, found := c.find(e.req)
	if found {
		c.own()
		c.live()[i] = e
		return true
	}
	if c.head > 0 && c.head >= len(c.entries)/2 {
		// Reclaim the evicted front before growing.
		if c.shared {
			c.own()
		} else {
			n := copy(c.entries, c.live())
			clear(c.entries[n:])
			c.entries, c.head = c.entries[:n], 0
		}
	}
	if c.head+i < len(c.entries) {
		c.own() // an insert before the end shifts shared entries
	}
	c.entries = slices.Insert(c.entries, c.head+i, e)
	return false
}

func (c *dedupeClient) dropOldest() {
	if !c.shared {
		c.entries[c.head] = dedupeEntry{} // let the result go
	}
	c.head++
}

// dedupe remembers the results of recent client writes, per client, in
// request ID order. The bounds and their order of eviction are part of the
// replicated state (see the constants above).
type dedupe struct {
	clients map[string]*dedupeClient
	entries int
}

func newDedupe() *dedupe {
	return &dedupe{clients: map[string]*dedupeClient{}}
}

func (d *dedupe) lookup(client string, req uint64, now int64) (res *internalv1.Result, op uint8, ok bool) {
	c := d.clients[client]
	if c == nil {
		return nil, 0, false
	}
	i, ok := c.find(req)
	if !ok {
		return nil, 0, false
	}
	c.lastSeen = max(c.lastSeen, now)
	e := &c.live()[i]
	return e.result.load(), e.result.op, true
}

func (d *dedupe) remember(client string, req uint64, op uint8, res *internalv1.Result, now int64) {
	c := d.clients[client]
	if c == nil {
		// The client's ID is kept once, here, not once per entry.
		c = &dedupeClient{id: strings.Clone(client)}
		d.clients[c.id] = c
	}
	c.lastSeen = max(c.lastSeen, now)
	if !c.insert(dedupeEntry{req: req, at: now, result: storeResult(op, res)}) {
		d.entries++
	}
	for c.count() > DedupeWindow {
		oldest := c.live()[0]
		if c.count() <= DedupeMaxWindow && oldest.at > now-DedupeMinAgeNanos {
			break
		}
		c.dropOldest()
		d.entries--
	}
}

// sweep forgets clients idle since before cutoff.
func (d *dedupe) sweep(cutoff int64) {
	for id, c := range d.clients {
		if c.lastSeen < cutoff {
			d.entries -= c.count()
			delete(d.clients, id)
		}
	}
}

func (d *dedupe) len() int { return d.entries }

// capture takes what a snapshot needs without copying entries (each
// client's slice is marked shared; results are never modified) and returns
// its writer: the clients in ID order, then their entries in (client,
// request ID) order.
func (d *dedupe) capture() (uint64, func(*record.Writer) error) { return d.captureWith(true) }

// captureWith is capture, with the operations kept with the results
// written (ops) or left out (as 0: for the state hash, since they shape the
// answers to a reused request ID, not the state, and a member that
// restored a snapshot written before they were kept holds 0 for results a
// member that applied the same entries holds with their operations).
func (d *dedupe) captureWith(ops bool) (uint64, func(*record.Writer) error) {
	clients := make([]*internalv1.DedupeClient, 0, len(d.clients))
	live := make(map[string][]dedupeEntry, len(d.clients))
	for id, c := range d.clients {
		clients = append(clients, &internalv1.DedupeClient{ClientId: id, LastSeenUnixNano: c.lastSeen, Count: uint64(c.count())})
		live[id] = c.live()
		c.shared = true
	}
	sortClients(clients)
	return uint64(len(clients)), func(w *record.Writer) error {
		for _, c := range clients {
			if err := w.Write(c); err != nil {
				return err
			}
		}
		// Entries follow the clients, closed by the count implied by the
		// clients' counts.
		for _, c := range clients {
			for _, e := range live[c.GetClientId()] {
				rec := &internalv1.DedupeRecord{ClientId: c.GetClientId(), RequestId: e.req, AtUnixNano: e.at, Result: e.result.load()}
				if ops {
					rec.Op = uint32(e.result.op)
				}
				if err := w.Write(rec); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func (d *dedupe) restore(n uint64, r *record.Reader) error {
	fresh := newDedupe()
	order := make([]*dedupeClient, 0, min(n, record.MaxPrealloc))
	want := map[*dedupeClient]int{}
	var entries uint64
	for i := uint64(0); i < n; i++ {
		var c internalv1.DedupeClient
		if err := r.Read(&c); err != nil {
			return fmt.Errorf("dedupe client %d: %w", i, err)
		}
		if _, dup := fresh.clients[c.GetClientId()]; dup {
			return fmt.Errorf("dedupe client %d: %w: client %q twice", i, record.ErrCorrupt, c.GetClientId())
		}
		if c.GetCount() > DedupeMaxWindow {
			return fmt.Errorf("dedupe client %d: %w: %d entries, more than the %d kept", i, record.ErrCorrupt, c.GetCount(), DedupeMaxWindow)
		}
		dc := &dedupeClient{id: c.GetClientId(), lastSeen: c.GetLastSeenUnixNano()}
		fresh.clients[dc.id] = dc
		order = append(order, dc)
		want[dc] = int(c.GetCount())
		entries += c.GetCount()
	}
	for i := uint64(0); i < entries; i++ {
		var rec internalv1.DedupeRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("dedupe record %d: %w", i, err)
		}
		c, ok := fresh.clients[rec.GetClientId()]
		if !ok {
			return fmt.Errorf("dedupe record %d: %w: unknown client", i, record.ErrCorrupt)
		}
		if rec.GetOp() > 255 {
			return fmt.Errorf("dedupe record %d: %w: operation %d", i, record.ErrCorrupt, rec.GetOp())
		}
		if c.entries == nil {
			c.entries = make([]dedupeEntry, 0, want[c])
		}
		result := storeResult(uint8(rec.GetOp()), rec.GetResult())
		if _, err := result.decode(); err != nil {
			// A field of the wrong wire type passes the snapshot's decoder
			// as an unknown field, and re-encoded it does not decode: the
			// member panicked at its next snapshot, or at a retry.
			return fmt.Errorf("dedupe record %d: %w: result: %v", i, record.ErrCorrupt, err)
		}
		if !c.insert(dedupeEntry{req: rec.GetRequestId(), at: rec.GetAtUnixNano(), result: result}) {
			fresh.entries++
		}
	}
	for _, c := range order {
		if c.count() != want[c] {
			return fmt.Errorf("%w: dedupe client %q holds %d entries, its count says %d", record.ErrCorrupt, c.id, c.count(), want[c])
		}
	}
	*d = *fresh
	return nil
}

func sortClients(cs []*internalv1.DedupeClient) {
	slices.SortFunc(cs, func(a, b *internalv1.DedupeClient) int { return cmp.Compare(a.GetClientId(), b.GetClientId()) })
}
