package api_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
)

// keepAliveHandlers counts the goroutines serving a keep-alive stream.
func keepAliveHandlers() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "(*sessionService).KeepAlive(")
}

// A keep-alive stream its client cancels with keep-alives still unread
// ends its handler. The handler's receiver could leave on the cancelled
// context without telling the handler why, and the handler then waited
// forever (7 to 20 of 40 such streams leaked one).
func TestAbandonedKeepAliveStreamsLeaveNoHandler(t *testing.T) {
	c, cl := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sess, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	// The SDK stops keeping it alive (its stream, which could reconnect
	// under load, ends); the session lives on the server for its TTL, and
	// the raw streams below keep it alive.
	sess.Orphan()
	require.Eventually(t, func() bool { return keepAliveHandlers() == 0 }, 5*time.Second, 20*time.Millisecond,
		"the SDK's keep-alive stream did not end")
	base := 0
	sc := concordv1connect.NewSessionClient(http2Client(), "http://"+c.Members[0].Cfg.ListenClient)
	for range 40 {
		sctx, scancel := context.WithCancel(ctx)
		st := sc.KeepAlive(sctx)
		for range 20 {
			_ = st.Send(&concordv1.KeepAliveRequest{Id: sess.ID()})
		}
		scancel()
	}
	if !assert.Eventually(t, func() bool { return keepAliveHandlers() <= base }, 30*time.Second, 50*time.Millisecond,
		"keep-alive handlers still run after their streams were cancelled: %d", keepAliveHandlers()-base) {
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "sessionService).KeepAlive") {
				t.Logf("%s", g)
			}
		}
	}
}
