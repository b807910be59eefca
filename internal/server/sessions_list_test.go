package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/testcluster"
)

// Session/List answered every session in one message: with up to a
// million sessions of names up to 256 bytes, far more than the SDK's 64 MiB
// read limit, and `concord session ls` failed. It now answers a page (at
// most 1,000 sessions, after an ID), with more set while sessions remain,
// and the SDK's ListSessions reads every page.
func TestListSessionsIsPaged(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := context.Background()
	sc := concordv1connect.NewSessionClient(http.DefaultClient, "http://"+c.Endpoints()[0])
	const n = 1005
	name := strings.Repeat("n", 256)
	var (
		wg   sync.WaitGroup
		errs = make(chan error, n)
		next = make(chan struct{}, n)
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				_, err := sc.Create(ctx, connect.NewRequest(&concordv1.CreateSessionRequest{TtlMs: 3_600_000, Name: name}))
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// No limit: the server's page bound.
	resp, err := sc.List(ctx, connect.NewRequest(&concordv1.ListSessionsRequest{}))
	require.NoError(t, err)
	require.Len(t, resp.Msg.GetSessions(), 1000)
	require.True(t, resp.Msg.GetMore())
	// A page after the last ID read holds the rest.
	last := resp.Msg.GetSessions()[999].GetId()
	resp, err = sc.List(ctx, connect.NewRequest(&concordv1.ListSessionsRequest{After: last, Limit: 100}))
	require.NoError(t, err)
	require.Len(t, resp.Msg.GetSessions(), n-1000)
	require.False(t, resp.Msg.GetMore())
	require.Greater(t, resp.Msg.GetSessions()[0].GetId(), last)
	_, err = sc.List(ctx, connect.NewRequest(&concordv1.ListSessionsRequest{Limit: -1}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))

	// The SDK reads every page, in ID order, each session once.
	all, err := c.Client().ListSessions(ctx)
	require.NoError(t, err)
	require.Len(t, all, n)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].GetId(), all[i].GetId())
	}
	page, more, err := c.Client().ListSessionsPage(ctx, all[9].GetId(), 10)
	require.NoError(t, err)
	require.True(t, more)
	require.Len(t, page, 10)
	for i, s := range page {
		require.Equal(t, all[10+i].GetId(), s.GetId())
	}
	_, _, err = c.Client().ListSessionsPage(ctx, 0, -1)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
}
