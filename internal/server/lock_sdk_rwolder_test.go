package server_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/testcluster"
)

// olderMemberProxy serves the client API of the member at target as a
// member of a release before AcquireRequest.conversion would: it passes
// every call through, but clears conversion from Lock.Acquire requests
// (gRPC, one uncompressed message), which such a member ignores as an
// unknown field. It returns the proxy's address.
func olderMemberProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse("http://" + target)
	require.NoError(t, err)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = &http.Transport{Protocols: &h2c}
	proxy.FlushInterval = -1
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/concord.v1.Lock/Acquire" {
			body, err := io.ReadAll(r.Body)
			if err != nil || len(body) < 5 || body[0] != 0 {
				http.Error(w, "olderMemberProxy: unexpected Lock.Acquire body", http.StatusBadRequest)
				return
			}
			var req concordv1.AcquireRequest
			if err := req.UnmarshalVT(body[5:]); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.Conversion = false
			msg, err := req.MarshalVT()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			framed := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
			framed = append(framed, msg...)
			r.Body = io.NopCloser(bytes.NewReader(framed))
			r.ContentLength = int64(len(framed))
		}
		proxy.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: handler, Protocols: &h2c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// A member of a release before conversions grants a Downgrade of a write
// lock that had ended (force-released before a keep-alive told the SDK) as
// a read lock made anew, under a token of its own. The SDK caught that (a
// downgrade in place keeps the token) and ended the hold with ErrLockLost;
// when it began to send conversions as such it dropped the check, so
// against such a member (docs/operations.md: a cluster made only of older
// members grants anew, as before) the loss stayed silent: the caller held
// a read lock it believed it had held since the write lock.
func TestSDKRWMutexDowngradeGrantedAnewByAnOlderMemberEndsTheHold(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	admin := c.Client()
	cl, err := client.New(ctx, client.Config{Endpoints: []string{olderMemberProxy(t, c.Endpoints()[0])}, DisableBatching: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })

	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "rw-older")
	require.NoError(t, rw.Lock(ctx))
	hold, token := rw.Context(), rw.Token()
	_, err = admin.ForceReleaseLock(ctx, "rw-older", token, "drill")
	require.NoError(t, err)
	require.NoError(t, hold.Err(), "the SDK learns of the force-release at the next keep-alive, 10s away")

	// The older member grants a read lock anew: the Downgrade returns, but
	// the hold it continues had ended.
	require.NoError(t, rw.Downgrade(ctx))
	require.NotEqual(t, token, rw.Token(), "the older member kept the token: it converted in place")
	cause := endsWithin(t, hold, 5*time.Second, "a downgrade granted anew")
	require.ErrorIs(t, cause, client.ErrLockLost)
	require.ErrorContains(t, cause, "before its downgrade reached the server")
}
