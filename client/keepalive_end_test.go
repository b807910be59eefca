package client

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/api/vtcodec"
)

// answeringSessions creates sessions and answers every keep-alive; ended
// is closed when a keep-alive stream's requests end (the client closed or
// reset it).
type answeringSessions struct {
	concordv1connect.UnimplementedSessionHandler
	nextID    atomic.Int64
	keptAlive atomic.Int64
	ended     chan struct{}
}

func (s *answeringSessions) Create(_ context.Context, req *connect.Request[concordv1.CreateSessionRequest]) (*connect.Response[concordv1.CreateSessionResponse], error) {
	return connect.NewResponse(&concordv1.CreateSessionResponse{Id: s.nextID.Add(1), TtlMs: req.Msg.GetTtlMs()}), nil
}

func (s *answeringSessions) KeepAlive(ctx context.Context, stream *connect.BidiStream[concordv1.KeepAliveRequest, concordv1.KeepAliveResponse]) error {
	defer close(s.ended)
	for {
		req, err := stream.Receive()
		if err != nil {
			return nil
		}
		s.keptAlive.Add(1)
		if err := stream.Send(&concordv1.KeepAliveResponse{Id: req.GetId(), TtlMs: 3000}); err != nil {
			return nil
		}
	}
}

// Closing the client ends its keep-alive stream on the member too.
//
// Go's HTTP/2 transport does not notice a cancelled context while it waits
// for the next message of a request body, so a keep-alive stream whose
// context alone was cancelled stayed open: the member kept the stream, the
// SDK's receiver stayed blocked on it, and a Send that failed on the
// cancelled context waited for that receiver forever, so Client.Close
// hung (it did, once, in CI: TestOneClientsManySessionsOutliveALeaderChange
// waited 9 minutes in Close). The stream now ends its request as well.
func TestCloseEndsTheKeepAliveStreamOnTheMember(t *testing.T) {
	srv := &answeringSessions{ended: make(chan struct{})}
	c, hs := fakeServer(t, Config{}, func(mux *http.ServeMux) {
		mux.Handle(concordv1connect.NewSessionHandler(srv, vtcodec.Option()))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.NewSession(ctx, WithTTL(3*time.Second))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return srv.keptAlive.Load() > 0 }, 5*time.Second, 10*time.Millisecond,
		"the session was never kept alive")

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-ctx.Done():
		hs.CloseClientConnections() // or the server's Close waits for the stream
		t.Fatal("Client.Close did not return")
	}
	require.True(t, errors.Is(s.Err(), ErrClosed), "the session did not end with the client: %v", s.Err())
	select {
	case <-srv.ended:
	case <-ctx.Done():
		hs.CloseClientConnections() // or the server's Close waits for the stream
		t.Fatal("the member's keep-alive stream stayed open after the client closed")
	}
}

// answeringBatches answers every call of a KV.Batch stream with an empty
// result; ended is closed when a stream's requests end.
type answeringBatches struct {
	concordv1connect.UnimplementedKVHandler
	answered atomic.Int64
	ended    chan struct{}
}

func (k *answeringBatches) Batch(ctx context.Context, stream *connect.BidiStream[concordv1.BatchRequest, concordv1.BatchResponse]) error {
	defer close(k.ended)
	for {
		req, err := stream.Receive()
		if err != nil {
			return nil
		}
		resp := &concordv1.BatchResponse{}
		for _, call := range req.GetCalls() {
			resp.Results = append(resp.Results, &concordv1.BatchResult{Id: call.GetId(),
				Response: &concordv1.BatchResult_Put{Put: &concordv1.PutResponse{Header: &concordv1.ResponseHeader{Revision: 7}}}})
		}
		k.answered.Add(int64(len(resp.Results)))
		if err := stream.Send(resp); err != nil {
			return nil
		}
	}
}

// Closing the client ends its Connect batch stream on the member too (see
// TestCloseEndsTheKeepAliveStreamOnTheMember).
func TestCloseEndsTheBatchStreamOnTheMember(t *testing.T) {
	kv := &answeringBatches{ended: make(chan struct{})}
	c, hs := fakeServer(t, Config{DisableFramedBatch: true}, func(mux *http.ServeMux) {
		mux.Handle(concordv1connect.NewKVHandler(kv, vtcodec.Option()))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	require.Positive(t, kv.answered.Load(), "the put did not go through the batch stream")
	require.NoError(t, c.Close())
	select {
	case <-kv.ended:
	case <-ctx.Done():
		hs.CloseClientConnections() // or the server's Close waits for the stream
		t.Fatal("the member's batch stream stayed open after the client closed")
	}
}
