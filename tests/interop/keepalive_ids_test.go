package interop_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/testcluster"
)

// An id of 0 or below names no session (IDs are Raft indexes, from 1): a
// keep-alive of it is answered as any session that does not exist is.
// On the stream that is `expired: true` for that id alone, and the stream
// goes on: it carries a client's other sessions, which an error ending it
// would leave without keep-alives (and a client resending the id after
// each reconnect, without any). KeepAliveResponse has no error field to
// say more. The unary form answers SESSION_NOT_FOUND, as Session/Get and
// Session/Revoke do for such an id. Nothing changes on the server.
func TestGRPCKeepAliveOfANonPositiveID(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	const ttl = 10 * time.Second
	id := createSession(t, ctx, conn, ttl)

	ka, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "KeepAlive", ClientStreams: true, ServerStreams: true}, sessionKeepAlive)
	require.NoError(t, err)
	for _, want := range []struct {
		id      int64
		expired bool
	}{{0, true}, {id, false}, {-5, true}, {id, false}, {-1 << 63, true}, {id, false}} {
		require.NoError(t, ka.SendMsg(&concordv1.KeepAliveRequest{Id: want.id}))
		var resp concordv1.KeepAliveResponse
		require.NoError(t, ka.RecvMsg(&resp), "keep-alive of %d", want.id)
		require.Equal(t, want.id, resp.GetId())
		require.Equal(t, want.expired, resp.GetExpired(), "keep-alive of %d", want.id)
		if want.expired {
			require.Zero(t, resp.GetTtlMs())
		} else {
			require.Equal(t, ttl.Milliseconds(), resp.GetTtlMs())
		}
	}
	require.NoError(t, ka.CloseSend())

	for _, bad := range []int64{0, -5} {
		var resp concordv1.KeepAliveResponse
		err := conn.Invoke(ctx, "/concord.v1.Session/KeepAliveOnce", &concordv1.KeepAliveRequest{Id: bad}, &resp)
		code, reason := reasonOf(t, err)
		require.Equal(t, codes.NotFound, code, "%v", err)
		require.Equal(t, "SESSION_NOT_FOUND", reason)
	}
	// Nothing changed: the one session is there, kept alive.
	var list concordv1.ListSessionsResponse
	require.NoError(t, conn.Invoke(ctx, "/concord.v1.Session/List", &concordv1.ListSessionsRequest{}, &list))
	require.Len(t, list.GetSessions(), 1)
	require.Equal(t, id, list.GetSessions()[0].GetId())
}
