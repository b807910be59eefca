// Package idgen generates distributed IDs on a concord cluster:
//
//   - Snowflake: 64-bit, time-ordered IDs made in process at memory speed,
//     with a worker ID leased from concord and bound to a session, and a time
//     high-water mark kept in concord so that no restart, move or clock
//     rollback ever reissues a timestamp.
//   - Segments (Meituan Leaf): numbers of a business tag handed out in
//     blocks, double-buffered and prefetched, the block size adapting to
//     demand.
//   - UUIDv7 (RFC 9562), monotonic within the process, without coordination.
//   - Strict sequences: gap-free numbers, batched, one Raft write per batch
//     (the slow path).
package idgen

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/concord-dev/concord/client"
)

// Layout is how a snowflake's 63 bits are split: milliseconds since Epoch,
// then the worker ID, then a sequence within the millisecond.
type Layout struct {
	Epoch      time.Time
	TimeBits   int
	WorkerBits int
	SeqBits    int
}

// DefaultEpoch is 2025-01-01T00:00:00Z.
var DefaultEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultLayout is 41 bits of milliseconds (69.7 years from the epoch), 10
// worker bits and 12 sequence bits: 4,096 IDs per millisecond per worker.
var DefaultLayout = Layout{Epoch: DefaultEpoch, TimeBits: 41, WorkerBits: 10, SeqBits: 12}

// Validate checks that the bits add up to 63, that the epoch is not in the
// future (as of now) and that the time field has not overflowed.
func (l Layout) Validate(now time.Time) error {
	if l.TimeBits+l.WorkerBits+l.SeqBits != 63 {
		return fmt.Errorf("%w: %d time + %d worker + %d sequence bits = %d, not 63", client.ErrLayoutMismatch,
			l.TimeBits, l.WorkerBits, l.SeqBits, l.TimeBits+l.WorkerBits+l.SeqBits)
	}
	if l.TimeBits < 30 || l.WorkerBits < 1 || l.WorkerBits > 16 || l.SeqBits < 1 {
		return fmt.Errorf("%w: need at least 30 time bits, 1 to 16 worker bits and 1 sequence bit", client.ErrLayoutMismatch)
	}
	if l.Epoch.After(now) {
		return fmt.Errorf("%w: epoch %s is in the future", client.ErrLayoutMismatch, l.Epoch.Format(time.RFC3339))
	}
	if l.units(now) > l.maxTime() {
		return fmt.Errorf("%w: %d time bits from %s ended on %s", client.ErrExhausted, l.TimeBits,
			l.Epoch.Format(time.RFC3339), l.End().Format(time.RFC3339))
	}
	return nil
}

func (l Layout) maxTime() int64   { return int64(1)<<l.TimeBits - 1 }
func (l Layout) maxWorker() int64 { return int64(1)<<l.WorkerBits - 1 }
func (l Layout) maxSeq() int64    { return int64(1)<<l.SeqBits - 1 }

// units returns milliseconds since the epoch. t.Sub saturates past 292
// years (an Epoch left at zero): the time field then froze at the limit and
// Validate took a field that had run out for a young one.
func (l Layout) units(t time.Time) int64 {
	if d := t.Sub(l.Epoch); d > math.MinInt64 && d < math.MaxInt64 {
		return d.Milliseconds()
	}
	return t.UnixMilli() - l.Epoch.UnixMilli()
}

// unixMs converts milliseconds since the epoch to Unix milliseconds.
func (l Layout) unixMs(units int64) int64 { return l.Epoch.UnixMilli() + units }

// at returns the time ms milliseconds after the epoch. It adds seconds and
// nanoseconds rather than a time.Duration, which wraps past 292 years: 44
// or more time bits reach further than that.
func (l Layout) at(ms int64) time.Time {
	return time.Unix(l.Epoch.Unix()+ms/1000, int64(l.Epoch.Nanosecond())+ms%1000*int64(time.Millisecond)).In(l.Epoch.Location())
}

// End is when the time field runs out.
func (l Layout) End() time.Time { return l.at(l.maxTime()) }

// YearsLeft is how long the time field lasts from now, in years. It is
// counted in milliseconds: End().Sub(now) would saturate at 292 years.
func (l Layout) YearsLeft(now time.Time) float64 {
	return float64(l.maxTime()-l.units(now)) / (24 * 365.25 * 3600 * 1000)
}

// Compose builds an ID.
func (l Layout) Compose(ms, worker, seq int64) int64 {
	return ms<<(l.WorkerBits+l.SeqBits) | worker<<l.SeqBits | seq
}

// Decoded is an ID's parts.
type Decoded struct {
	Time   time.Time
	Worker int64
	Seq    int64
}

// Decode splits an ID into its parts.
func (l Layout) Decode(id int64) (Decoded, error) {
	if id < 0 {
		return Decoded{}, errors.New("idgen: a snowflake ID is not negative")
	}
	ms := id >> (l.WorkerBits + l.SeqBits)
	return Decoded{
		Time:   l.at(ms),
		Worker: (id >> l.SeqBits) & l.maxWorker(),
		Seq:    id & l.maxSeq(),
	}, nil
}
