package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
)

// cancelingWatchKV serves watches whose first stream ends the way a killed
// member's does: the member's own context is cancelled, its handler returns
// that, and the stream ends with Canceled and no ErrorInfo. Later streams
// serve the events from their start revision up to lastRev.
type cancelingWatchKV struct {
	concordv1connect.UnimplementedKVHandler
	lastRev uint64
	// code ends the first stream.
	code connect.Code
	mu   sync.Mutex
	// starts records the start revision of every stream opened.
	starts []uint64
}

func (k *cancelingWatchKV) Watch(ctx context.Context, req *connect.Request[concordv1.WatchRequest], s *connect.ServerStream[concordv1.WatchResponse]) error {
	k.mu.Lock()
	k.starts = append(k.starts, req.Msg.GetStartRevision())
	first := len(k.starts) == 1
	k.mu.Unlock()
	next := req.Msg.GetStartRevision()
	if err := s.Send(&concordv1.WatchResponse{Header: &concordv1.ResponseHeader{Revision: next - 1}}); err != nil {
		return err
	}
	for rev := next; rev <= k.lastRev; rev++ {
		ev := &concordv1.Event{Type: EventPut, Kv: &concordv1.KeyValue{Key: []byte(fmt.Sprintf("w/%d", rev)), ModRevision: rev}}
		if err := s.Send(&concordv1.WatchResponse{Header: &concordv1.ResponseHeader{Revision: rev}, Events: []*concordv1.Event{ev}}); err != nil {
			return err
		}
		if first && rev == next {
			// What errs.ToConnect makes of the handler's ctx.Err().
			return connect.NewError(k.code, context.Canceled)
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (k *cancelingWatchKV) startRevisions() []uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]uint64(nil), k.starts...)
}

// A member killed while serving a watch cancels its own requests' context:
// its watch handler ends the stream with Canceled (or DeadlineExceeded), with
// no ErrorInfo, before the connection drops. The SDK took that for the
// caller's cancellation and ended the watch with "context canceled" although
// the caller's ctx was live (TestWatchResumesWithoutGapsAcrossMemberLoss
// failed so about once in 25 runs). A watch must resume after the last
// revision it delivered, as it does when the connection breaks.
func TestWatchResumesAfterTheMemberCancelsTheStream(t *testing.T) {
	for _, code := range []connect.Code{connect.CodeCanceled, connect.CodeDeadlineExceeded} {
		t.Run(code.String(), func(t *testing.T) {
			kv := &cancelingWatchKV{lastRev: 5, code: code}
			c := fakeMember(t, kv, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			watch := c.Watch(ctx, "w/", WithPrefix(), WithRevision(2))
			var revs []uint64
			for len(revs) < 4 {
				select {
				case resp, ok := <-watch:
					require.True(t, ok, "the watch closed after revisions %v", revs)
					require.NoError(t, resp.Err, "the watch ended after revisions %v", revs)
					for _, ev := range resp.Events {
						revs = append(revs, ev.GetKv().GetModRevision())
					}
				case <-ctx.Done():
					t.Fatalf("the watch delivered only revisions %v", revs)
				}
			}
			require.Equal(t, []uint64{2, 3, 4, 5}, revs)
			require.Equal(t, []uint64{2, 3}, kv.startRevisions(), "the watch resumed after the last revision delivered")
		})
	}
}
