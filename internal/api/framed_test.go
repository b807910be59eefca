package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// upgrade opens a connection to addr and asks for the framed batch
// protocol; it returns the connection, its reader and the answer's status.
func upgrade(t *testing.T, addr, token string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	req := "GET /concord.v1.KV/Batch HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: " + batchwire.Protocol + "\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	_, err = conn.Write([]byte(req + "\r\n"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
	}
	return conn, br, resp.StatusCode
}

func metric(t *testing.T, addr, line string) bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return strings.Contains(string(b), line)
}

func TestFramedBatchServesCallsAndPings(t *testing.T) {
	c, _ := single(t, nil)
	addr := c.Endpoints()[0]
	conn, br, status := upgrade(t, addr, "")
	require.Equal(t, http.StatusSwitchingProtocols, status)
	w := batchwire.NewWriter(conn)
	r := batchwire.NewReader(br, 1<<20)

	require.NoError(t, w.WritePing(batchwire.FramePing, [8]byte{9, 8, 7, 6, 5, 4, 3, 2}))
	typ, payload, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, batchwire.FramePong, typ)
	require.Equal(t, []byte{9, 8, 7, 6, 5, 4, 3, 2}, payload, "a pong echoes its ping")

	require.NoError(t, w.WriteMessage(&concordv1.BatchRequest{Calls: []*concordv1.BatchCall{
		{Id: 7, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("framed"), Value: []byte("v")}}},
		{Id: 8, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Value: []byte("no key")}}},
	}}))
	results := map[uint64]*concordv1.BatchResult{}
	for len(results) < 2 {
		typ, payload, err := r.Next()
		require.NoError(t, err)
		require.Equal(t, batchwire.FrameMessage, typ)
		var resp concordv1.BatchResponse
		require.NoError(t, (vtcodec.Codec{}).Unmarshal(payload, &resp))
		for _, res := range resp.GetResults() {
			results[res.GetId()] = res
		}
	}
	require.NotNil(t, results[7].GetPut(), "the put succeeds: %v", results[7])
	require.Contains(t, results[8].GetError().GetMessage(), "empty", "a bad call fails alone with its error")
	require.True(t, metric(t, addr, `concord_api_open_streams{method="KV/BatchFramed"} 1`))

	cl := c.Client()
	got, err := cl.Get(context.Background(), "framed")
	require.NoError(t, err)
	require.Equal(t, "v", string(got.Value))
}

func TestFramedBatchBadFrameEndsTheConnectionWithAReason(t *testing.T) {
	c, cl := single(t, nil)
	ctx := context.Background()
	_, err := cl.Put(ctx, "before", []byte("1"))
	require.NoError(t, err)
	before := visible(t, cl)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"unknown type", []byte{42, 0, 0, 0, 0}, "unknown"},
		{"message above the limit", []byte{batchwire.FrameMessage, 0x7f, 0xff, 0xff, 0xff}, "too large"},
		{"undecodable message", []byte{batchwire.FrameMessage, 0, 0, 0, 2, 0x0a, 0x05}, "unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br, status := upgrade(t, c.Endpoints()[0], "")
			require.Equal(t, http.StatusSwitchingProtocols, status)
			_, err := conn.Write(tc.frame)
			require.NoError(t, err)
			r := batchwire.NewReader(br, 1<<20)
			_, _, err = r.Next()
			require.ErrorIs(t, err, batchwire.ErrGoAway)
			require.Contains(t, err.Error(), tc.want)
			_, _, err = r.Next()
			require.ErrorIs(t, err, io.EOF, "the member closes the connection after its goaway")
		})
	}
	require.Equal(t, before, visible(t, cl), "bad frames change nothing")
}

func TestFramedBatchNeedsTheToken(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	addr := c.Endpoints()[0]
	_, _, status := upgrade(t, addr, "")
	require.Equal(t, http.StatusUnauthorized, status)
	_, _, status = upgrade(t, addr, "wrong")
	require.Equal(t, http.StatusUnauthorized, status)
	_, _, status = upgrade(t, addr, "s3cret")
	require.Equal(t, http.StatusSwitchingProtocols, status)
}

// A member started with --disable-framed-batch answers the upgrade as an
// older release would, and the SDK batches over its Connect stream.
func TestSDKFallsBackToConnectWhenTheMemberRefusesFramedBatch(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.DisableFramedBatch = true })
	addr := c.Endpoints()[0]
	_, _, status := upgrade(t, addr, "")
	require.NotEqual(t, http.StatusSwitchingProtocols, status)

	ctx := context.Background()
	_, err := cl.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	got, err := cl.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(got.Value))
	require.True(t, metric(t, addr, `concord_api_open_streams{method="KV/Batch"} 1`), "the SDK's batch stream is Connect's")
	require.False(t, metric(t, addr, `method="KV/BatchFramed"`))
}

func TestSDKUsesFramedBatchAndConnectWhenAsked(t *testing.T) {
	c, cl := single(t, nil)
	addr := c.Endpoints()[0]
	_, err := cl.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	require.True(t, metric(t, addr, `concord_api_open_streams{method="KV/BatchFramed"} 1`))

	off, err := client.New(context.Background(), client.Config{Endpoints: c.Endpoints(), DisableFramedBatch: true})
	require.NoError(t, err)
	defer off.Close()
	_, err = off.Put(context.Background(), "k", []byte("w"))
	require.NoError(t, err)
	require.True(t, metric(t, addr, `concord_api_open_streams{method="KV/Batch"} 1`))
}

// Stopping a member closes its framed connections: Stop does not hang on
// them, and the client sees the connection end.
func TestStopClosesFramedConnections(t *testing.T) {
	c, _ := single(t, nil)
	conn, br, status := upgrade(t, c.Endpoints()[0], "")
	require.Equal(t, http.StatusSwitchingProtocols, status)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	start := time.Now()
	c.Stop(0)
	require.Less(t, time.Since(start), 10*time.Second)
	_, _, err := batchwire.NewReader(br, 1<<20).Next()
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the member closed the connection: %v", err)
}

// Over TLS the SDK's unary calls use HTTP/2 and its batch stream the
// framed protocol on HTTP/1.1, on the same port.
func TestSDKOverTLS(t *testing.T) {
	certFile, keyFile, pool := testcluster.SelfSigned(t, t.TempDir())
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	}})
	addr := c.Endpoints()[0]
	ctx := context.Background()
	for _, framedOff := range []bool{false, true} {
		cl, err := client.New(ctx, client.Config{Endpoints: []string{"https://" + addr}, TLS: &tls.Config{RootCAs: pool}, DisableFramedBatch: framedOff})
		require.NoError(t, err)
		_, err = cl.Put(ctx, "tls", []byte("yes"))
		require.NoError(t, err)
		got, err := cl.Get(ctx, "tls")
		require.NoError(t, err)
		require.Equal(t, "yes", string(got.Value))
		require.NoError(t, cl.Close())
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get("https://" + addr + "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.True(t, strings.Contains(string(b), `concord_api_requests_total{code="ok",method="KV/BatchFramed"} 1`), "the first client's batch stream was framed, and ended cleanly")
	require.True(t, strings.Contains(string(b), `concord_api_open_streams{method="KV/Batch"}`), "the second's was Connect's")
}
