package api

import (
	"context"
	"crypto/sha256"
	"io"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/server"
)

type kvService struct {
	s            *server.Server
	m            *metrics
	maxCallBytes int
	// token is the bearer token a framed batch connection must present.
	token string
	// framedOff refuses the framed batch protocol, as a member of an
	// older release does (tests).
	framedOff bool
	framed    framedConns
	// batchCodec decodes batch messages, on either transport.
	batchCodec batchCodec
}

func unary[Req, Resp any](ctx context.Context, req *connect.Request[Req], f func(context.Context, *Req) (*Resp, error)) (*connect.Response[Resp], error) {
	resp, err := f(ctx, req.Msg)
	if err != nil {
		return nil, wire(err)
	}
	return connect.NewResponse(resp), nil
}

func (k *kvService) Range(ctx context.Context, req *connect.Request[concordv1.RangeRequest]) (*connect.Response[concordv1.RangeResponse], error) {
	return unary(ctx, req, k.s.Range)
}

func (k *kvService) Put(ctx context.Context, req *connect.Request[concordv1.PutRequest]) (*connect.Response[concordv1.PutResponse], error) {
	return unary(ctx, req, k.s.Put)
}

func (k *kvService) DeleteRange(ctx context.Context, req *connect.Request[concordv1.DeleteRangeRequest]) (*connect.Response[concordv1.DeleteRangeResponse], error) {
	return unary(ctx, req, k.s.DeleteRange)
}

func (k *kvService) Txn(ctx context.Context, req *connect.Request[concordv1.TxnRequest]) (*connect.Response[concordv1.TxnResponse], error) {
	return unary(ctx, req, k.s.Txn)
}

func (k *kvService) Add(ctx context.Context, req *connect.Request[concordv1.AddRequest]) (*connect.Response[concordv1.AddResponse], error) {
	return unary(ctx, req, k.s.Add)
}

func (k *kvService) Watch(ctx context.Context, req *connect.Request[concordv1.WatchRequest], stream *connect.ServerStream[concordv1.WatchResponse]) error {
	return wire(k.s.Watch(ctx, req.Msg, stream.Send))
}

type sessionService struct{ s *server.Server }

func (ss *sessionService) Create(ctx context.Context, req *connect.Request[concordv1.CreateSessionRequest]) (*connect.Response[concordv1.CreateSessionResponse], error) {
	return unary(ctx, req, ss.s.CreateSession)
}

func (ss *sessionService) Revoke(ctx context.Context, req *connect.Request[concordv1.RevokeSessionRequest]) (*connect.Response[concordv1.RevokeSessionResponse], error) {
	return unary(ctx, req, ss.s.RevokeSession)
}

func (ss *sessionService) Get(ctx context.Context, req *connect.Request[concordv1.GetSessionRequest]) (*connect.Response[concordv1.GetSessionResponse], error) {
	return unary(ctx, req, ss.s.GetSession)
}

func (ss *sessionService) List(ctx context.Context, req *connect.Request[concordv1.ListSessionsRequest]) (*connect.Response[concordv1.ListSessionsResponse], error) {
	return unary(ctx, req, ss.s.ListSessions)
}

func (ss *sessionService) KeepAliveOnce(ctx context.Context, req *connect.Request[concordv1.KeepAliveRequest]) (*connect.Response[concordv1.KeepAliveResponse], error) {
	ttls, err := ss.s.KeepAlive(ctx, []int64{req.Msg.GetId()})
	if err != nil {
		return nil, wire(err)
	}
	if ttls[0] < 0 {
		return nil, wire(sessionGone(req.Msg.GetId()))
	}
	return connect.NewResponse(&concordv1.KeepAliveResponse{Id: req.Msg.GetId(), TtlMs: ttls[0],
		Lost: lostGrants(ss.s, req.Msg)}), nil
}

// maxHeldGrants bounds the grants one keep-alive has judged.
const maxHeldGrants = 1024

// lostGrants judges at most maxHeldGrants of a keep-alive's grants,
// held_tokens first.
func lostGrants(s *server.Server, req *concordv1.KeepAliveRequest) []*concordv1.LostGrant {
	tokens := req.GetHeldTokens()
	tokens = tokens[:min(len(tokens), maxHeldGrants)]
	held := req.GetHeld()
	held = held[:min(len(held), maxHeldGrants-len(tokens))]
	return s.LostGrants(req.GetId(), tokens, held)
}

// maxKeepAliveBatch bounds the keep-alives of one stream answered by one
// quorum check.
const maxKeepAliveBatch = 1024

// KeepAlive serves one client's keep-alives for all its sessions. A failure
// to reach the leader ends the stream; the SDK reconnects, possibly to
// another member.
//
// The SDK sends the keep-alives of all a client's sessions on one stream
// without waiting for answers. Those that arrive while a quorum check is
// under way are answered together by the next one: answered one at a time,
// a stream confirmed at most one keep-alive per round trip, and one client
// with a few hundred sessions lost them to expiry over a 5 ms link.
func (ss *sessionService) KeepAlive(ctx context.Context, stream *connect.BidiStream[concordv1.KeepAliveRequest, concordv1.KeepAliveResponse]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqs := make(chan *concordv1.KeepAliveRequest, maxKeepAliveBatch)
	recvErr := make(chan error, 1)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				recvErr <- ctx.Err() // the handler waits for a reason
				return
			}
		}
	}()
	batch := make([]*concordv1.KeepAliveRequest, 0, maxKeepAliveBatch)
	ids := make([]int64, 0, maxKeepAliveBatch)
	for {
		var req *concordv1.KeepAliveRequest
		var ok bool
		select {
		case req, ok = <-reqs:
		case <-ctx.Done():
			// The client went away, or the member is stopping: the
			// client's next keep-alive may be a third of a TTL away, and
			// a graceful stop must not wait for it.
			return wire(ss.s.StreamEnd(ctx))
		}
		if !ok {
			if err := <-recvErr; !isEOF(err) {
				return err
			}
			return nil
		}
		batch, ids = append(batch[:0], req), append(ids[:0], req.GetId())
	more:
		for len(batch) < maxKeepAliveBatch {
			select {
			case r, ok := <-reqs:
				if !ok {
					break more // answer these; the next receive ends the stream
				}
				batch, ids = append(batch, r), append(ids, r.GetId())
			default:
				break more
			}
		}
		ttls, err := ss.s.KeepAlive(ctx, ids)
		if err != nil {
			return wire(err)
		}
		for i, req := range batch {
			resp := &concordv1.KeepAliveResponse{Id: req.GetId(), TtlMs: ttls[i], Expired: ttls[i] < 0}
			if resp.Expired {
				resp.TtlMs = 0
			} else {
				resp.Lost = lostGrants(ss.s, req)
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

type clusterService struct{ s *server.Server }

func (c *clusterService) Status(ctx context.Context, req *connect.Request[concordv1.StatusRequest]) (*connect.Response[concordv1.StatusResponse], error) {
	resp, err := c.s.Status(ctx)
	if err != nil {
		return nil, wire(err)
	}
	return connect.NewResponse(resp), nil
}

func (c *clusterService) AddMember(ctx context.Context, req *connect.Request[concordv1.AddMemberRequest]) (*connect.Response[concordv1.AddMemberResponse], error) {
	return unary(ctx, req, c.s.AddMember)
}

func (c *clusterService) UpdateMember(ctx context.Context, req *connect.Request[concordv1.UpdateMemberRequest]) (*connect.Response[concordv1.UpdateMemberResponse], error) {
	return unary(ctx, req, c.s.UpdateMember)
}

func (c *clusterService) RemoveMember(ctx context.Context, req *connect.Request[concordv1.RemoveMemberRequest]) (*connect.Response[concordv1.RemoveMemberResponse], error) {
	return unary(ctx, req, c.s.RemoveMember)
}

func (c *clusterService) TransferLeader(ctx context.Context, req *connect.Request[concordv1.TransferLeaderRequest]) (*connect.Response[concordv1.TransferLeaderResponse], error) {
	return unary(ctx, req, c.s.TransferLeader)
}

func (c *clusterService) Hash(ctx context.Context, req *connect.Request[concordv1.HashRequest]) (*connect.Response[concordv1.HashResponse], error) {
	idx, h, err := c.s.Hash(ctx)
	if err != nil {
		return nil, wire(err)
	}
	return connect.NewResponse(&concordv1.HashResponse{AppliedIndex: idx, Hash: h, Header: &concordv1.ResponseHeader{Revision: idx, Member: c.s.Name()}}), nil
}

// snapshotChunk is the size of one streamed snapshot chunk.
const snapshotChunk = 256 << 10

func (c *clusterService) Snapshot(ctx context.Context, req *connect.Request[concordv1.SnapshotRequest], stream *connect.ServerStream[concordv1.SnapshotChunk]) error {
	pr, pw := io.Pipe()
	type result struct {
		index uint64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		idx, err := c.s.Snapshot(ctx, pw)
		pw.CloseWithError(err)
		done <- result{idx, err}
	}()
	h := sha256.New()
	buf := make([]byte, snapshotChunk)
	first := true
	for {
		n, err := io.ReadFull(pr, buf)
		if n > 0 {
			h.Write(buf[:n])
			chunk := &concordv1.SnapshotChunk{Data: append([]byte(nil), buf[:n]...)}
			if first {
				chunk.Header = &concordv1.ResponseHeader{Member: c.s.Name()}
				first = false
			}
			if serr := stream.Send(chunk); serr != nil {
				pr.CloseWithError(serr)
				<-done
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			r := <-done
			if r.err != nil {
				return wire(r.err)
			}
			return wire(err)
		}
	}
	r := <-done
	if r.err != nil {
		return wire(r.err)
	}
	return stream.Send(&concordv1.SnapshotChunk{
		Header: &concordv1.ResponseHeader{Revision: r.index, Member: c.s.Name()},
		Sha256: h.Sum(nil),
	})
}

type lockService struct{ s *server.Server }

func (l *lockService) Acquire(ctx context.Context, req *connect.Request[concordv1.AcquireRequest], stream *connect.ServerStream[concordv1.AcquireResponse]) error {
	return wire(l.s.AcquireLock(ctx, req.Msg, stream.Send))
}

func (l *lockService) Release(ctx context.Context, req *connect.Request[concordv1.ReleaseRequest]) (*connect.Response[concordv1.ReleaseResponse], error) {
	return unary(ctx, req, l.s.ReleaseLock)
}

func (l *lockService) Cancel(ctx context.Context, req *connect.Request[concordv1.CancelWaitRequest]) (*connect.Response[concordv1.CancelWaitResponse], error) {
	return unary(ctx, req, l.s.CancelWait)
}

func (l *lockService) Inspect(ctx context.Context, req *connect.Request[concordv1.InspectLockRequest]) (*connect.Response[concordv1.InspectLockResponse], error) {
	return unary(ctx, req, l.s.InspectLock)
}

func (l *lockService) List(ctx context.Context, req *connect.Request[concordv1.ListLocksRequest]) (*connect.Response[concordv1.ListLocksResponse], error) {
	return unary(ctx, req, l.s.ListLocks)
}

func (l *lockService) ForceRelease(ctx context.Context, req *connect.Request[concordv1.ForceReleaseRequest]) (*connect.Response[concordv1.ForceReleaseResponse], error) {
	return unary(ctx, req, l.s.ForceReleaseLock)
}

type idsService struct{ s *server.Server }

func (i *idsService) LeaseWorker(ctx context.Context, req *connect.Request[concordv1.LeaseWorkerRequest]) (*connect.Response[concordv1.LeaseWorkerResponse], error) {
	return unary(ctx, req, i.s.LeaseWorker)
}

func (i *idsService) ReserveWorker(ctx context.Context, req *connect.Request[concordv1.ReserveWorkerRequest]) (*connect.Response[concordv1.ReserveWorkerResponse], error) {
	return unary(ctx, req, i.s.ReserveWorker)
}

func (i *idsService) ReleaseWorker(ctx context.Context, req *connect.Request[concordv1.ReleaseWorkerRequest]) (*connect.Response[concordv1.ReleaseWorkerResponse], error) {
	return unary(ctx, req, i.s.ReleaseWorker)
}

func (i *idsService) ListWorkers(ctx context.Context, req *connect.Request[concordv1.ListWorkersRequest]) (*connect.Response[concordv1.ListWorkersResponse], error) {
	return unary(ctx, req, i.s.ListWorkers)
}

func (i *idsService) CreateTag(ctx context.Context, req *connect.Request[concordv1.CreateTagRequest]) (*connect.Response[concordv1.CreateTagResponse], error) {
	return unary(ctx, req, i.s.CreateTag)
}

func (i *idsService) AllocSegment(ctx context.Context, req *connect.Request[concordv1.AllocSegmentRequest]) (*connect.Response[concordv1.AllocSegmentResponse], error) {
	return unary(ctx, req, i.s.AllocSegment)
}

func (i *idsService) ListTags(ctx context.Context, req *connect.Request[concordv1.ListTagsRequest]) (*connect.Response[concordv1.ListTagsResponse], error) {
	resp, err := i.s.ListTags(ctx)
	if err != nil {
		return nil, wire(err)
	}
	return connect.NewResponse(resp), nil
}

func (i *idsService) NextIDs(ctx context.Context, req *connect.Request[concordv1.NextIDsRequest]) (*connect.Response[concordv1.NextIDsResponse], error) {
	return unary(ctx, req, i.s.NextIDs)
}

func (i *idsService) NextSnowflakes(ctx context.Context, req *connect.Request[concordv1.NextSnowflakesRequest]) (*connect.Response[concordv1.NextSnowflakesResponse], error) {
	return unary(ctx, req, i.s.NextSnowflakes)
}

func (i *idsService) NextSequence(ctx context.Context, req *connect.Request[concordv1.NextSequenceRequest]) (*connect.Response[concordv1.NextSequenceResponse], error) {
	return unary(ctx, req, i.s.NextSequence)
}
