package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

// A keep-alive stream waits for the client's next keep-alive (a third of
// the session's TTL away): a graceful stop must end it rather than wait for
// it, or every member with an SDK client that holds a session ran out its
// --shutdown-timeout and failed (concord server exited non-zero).
func TestStopEndsAnIdleKeepAliveStream(t *testing.T) {
	c, cl := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := c.Endpoints()[0]
	_, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return metric(t, addr, `concord_api_open_streams{method="Session/KeepAlive"} 1`) },
		10*time.Second, 10*time.Millisecond)
	c.Stop(0) // fails if the stop ran out its time (context deadline exceeded)
}
