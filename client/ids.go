package client

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// TagInfo describes a segment tag.
type TagInfo = concordv1.TagInfo

// WorkerInfo describes a worker ID of a pool.
type WorkerInfo = concordv1.WorkerInfo

// unaryCall runs one unary RPC with failover, retrying while that is safe
// (see Client.call).
func unaryCall[Resp any](ctx context.Context, c *Client, kind callKind, f func(context.Context, *endpoint) (*connect.Response[Resp], error)) (*Resp, error) {
	var out *Resp
	err := c.call(ctx, kind, func(ctx context.Context, ep *endpoint) error {
		r, err := f(ctx, ep)
		if err != nil {
			return err
		}
		out = r.Msg
		return nil
	})
	return out, err
}

// LeaseWorker leases a worker ID of pool to sess and returns it with its
// time high-water mark (ms since the Unix epoch): the caller must issue only
// timestamps above it. A freed ID is leased again only after guard.
func (c *Client) LeaseWorker(ctx context.Context, sess *Session, pool string, bits int, owner string, guard time.Duration) (int64, int64, error) {
	req := &concordv1.LeaseWorkerRequest{Pool: pool, WorkerBits: int32(bits), Session: sess.ID(), Owner: owner, GuardMs: guard.Milliseconds(), Meta: c.meta()}
	r, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.LeaseWorkerResponse], error) {
		return ep.ids.LeaseWorker(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return 0, 0, err
	}
	return r.GetWorkerId(), r.GetHighWaterMs(), nil
}

// ReserveWorker raises a held worker ID's high-water mark to untilMs and
// returns the mark.
func (c *Client) ReserveWorker(ctx context.Context, sess *Session, pool string, id int64, owner string, untilMs int64) (int64, error) {
	req := &concordv1.ReserveWorkerRequest{Pool: pool, WorkerId: id, Session: sess.ID(), Owner: owner, UntilMs: untilMs, Meta: c.meta()}
	r, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ReserveWorkerResponse], error) {
		return ep.ids.ReserveWorker(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return 0, err
	}
	return r.GetHighWaterMs(), nil
}

// ReleaseWorker frees a worker ID.
func (c *Client) ReleaseWorker(ctx context.Context, sess *Session, pool string, id int64, owner string) error {
	req := &concordv1.ReleaseWorkerRequest{Pool: pool, WorkerId: id, Session: sess.ID(), Owner: owner, Meta: c.meta()}
	_, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ReleaseWorkerResponse], error) {
		return ep.ids.ReleaseWorker(ctx, connect.NewRequest(req))
	})
	return err
}

// ListWorkers describes the worker IDs of a pool and its worker bits.
func (c *Client) ListWorkers(ctx context.Context, pool string) ([]*WorkerInfo, int, error) {
	r, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ListWorkersResponse], error) {
		return ep.ids.ListWorkers(ctx, connect.NewRequest(&concordv1.ListWorkersRequest{Pool: pool}))
	})
	if err != nil {
		return nil, 0, err
	}
	return r.GetWorkers(), int(r.GetWorkerBits()), nil
}

// CreateTag creates a segment tag that starts at start with an initial
// segment size of step. Creating it again with the same settings does
// nothing; with others, ErrTagExists.
func (c *Client) CreateTag(ctx context.Context, tag string, start, step int64) (*TagInfo, error) {
	req := &concordv1.CreateTagRequest{Tag: tag, Start: start, Step: step, Meta: c.meta()}
	r, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.CreateTagResponse], error) {
		return ep.ids.CreateTag(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return nil, err
	}
	return r.GetTag(), nil
}

// AllocSegment hands out the next count IDs of a tag: [start, end).
func (c *Client) AllocSegment(ctx context.Context, tag string, count int64) (int64, int64, error) {
	req := &concordv1.AllocSegmentRequest{Tag: tag, Count: count, Meta: c.meta()}
	r, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.AllocSegmentResponse], error) {
		return ep.ids.AllocSegment(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return 0, 0, err
	}
	return r.GetStart(), r.GetEnd(), nil
}

// ListTags describes every segment tag.
func (c *Client) ListTags(ctx context.Context) ([]*TagInfo, error) {
	r, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ListTagsResponse], error) {
		return ep.ids.ListTags(ctx, connect.NewRequest(&concordv1.ListTagsRequest{}))
	})
	if err != nil {
		return nil, err
	}
	return r.GetTags(), nil
}

// NextIDs returns n IDs of a tag from the serving member's buffer (for
// services that do not run a segment buffer of their own).
//
// Concurrent calls for one tag from one Client are coalesced into one call
// for their sum (each caller still gets its own n IDs); a call for more than
// 1,000 IDs goes alone.
func (c *Client) NextIDs(ctx context.Context, tag string, n int64) ([]int64, error) {
	if n < 1 || n > maxCoalescedIDs {
		return c.nextIDs(ctx, tag, n)
	}
	ids, err := c.coalescer(tag).next(ctx, n)
	if errors.Is(err, errAskAlone) {
		return c.nextIDs(ctx, tag, n)
	}
	return ids, err
}

func (c *Client) nextIDs(ctx context.Context, tag string, n int64) ([]int64, error) {
	req := &concordv1.NextIDsRequest{Tag: tag, N: n}
	r, err := c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_NextIds{NextIds: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.ids.NextIDs(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_NextIds{NextIds: resp.Msg}}, nil
		})
	if err != nil {
		return nil, err
	}
	c.observe(r.GetNextIds().GetHeader())
	return r.GetNextIds().GetIds(), nil
}

// NextSnowflakes returns n snowflake IDs generated by the serving member
// (default layout).
func (c *Client) NextSnowflakes(ctx context.Context, n int64) ([]int64, error) {
	r, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.NextSnowflakesResponse], error) {
		return ep.ids.NextSnowflakes(ctx, connect.NewRequest(&concordv1.NextSnowflakesRequest{N: n}))
	})
	if err != nil {
		return nil, err
	}
	return r.GetIds(), nil
}

// NextSequence returns the next n values of a gap-free sequence, first to
// last. It is the slow path: one Raft write per call.
func (c *Client) NextSequence(ctx context.Context, name string, n int64) (int64, int64, error) {
	req := &concordv1.NextSequenceRequest{Name: name, N: n, Meta: c.meta()}
	r, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.NextSequenceResponse], error) {
		return ep.ids.NextSequence(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return 0, 0, err
	}
	return r.GetFirst(), r.GetLast(), nil
}
