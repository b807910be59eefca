package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The SDK counts a session's TTL 0.5% short of the server's count, so a
// leader whose clock runs a little fast cannot expire a session (and grant
// its locks to others) while the SDK still vouches for it. Without the
// margin the SDK's only slack was the request's one-way latency: a holder
// cut off from the cluster saw its lock go to the next waiter 1.7–7.6 ms
// after its deadline in the robustness runs' loss-notice check, less than
// a leader clock running 0.1% fast takes from a 10 s TTL.
func TestSDKCountsASessionShortOfTheServer(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	const ttl = 60 * time.Second
	margin := ttl / 200
	before := time.Now()
	sess, err := c.Client().NewSession(ctx, client.WithTTL(ttl))
	require.NoError(t, err)
	after := time.Now()
	d := sess.Deadline()
	require.False(t, d.After(after.Add(ttl-margin)),
		"the SDK vouches for the session until %s after its creation returned; at most TTL less 0.5%% (%s)", d.Sub(after), ttl-margin)
	require.False(t, d.Before(before.Add(ttl-margin)), "the margin is more than 0.5%% of the TTL: deadline %s after the send", d.Sub(before))
}
