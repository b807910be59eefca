package daemon_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// h2cWatch opens a raw h2c connection to addr, reads the member's SETTINGS
// and opens a gRPC KV.Watch stream of a key nobody writes: a quiet stream.
// It returns the framer and the member's SETTINGS_MAX_CONCURRENT_STREAMS.
func h2cWatch(t *testing.T, addr string) (net.Conn, *http2.Framer, uint32) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = io.WriteString(conn, http2.ClientPreface)
	require.NoError(t, err)
	fr := http2.NewFramer(conn, conn)
	require.NoError(t, fr.WriteSettings())
	var maxStreams uint32
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err)
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			continue
		}
		v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
		require.True(t, ok, "the member's SETTINGS give no SETTINGS_MAX_CONCURRENT_STREAMS")
		maxStreams = v
		require.NoError(t, fr.WriteSettingsAck())
		break
	}
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, kv := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/concord.v1.KV/Watch"}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		require.NoError(t, enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]}))
	}
	require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndHeaders: true}))
	msg, err := proto.Marshal(&concordv1.WatchRequest{Key: []byte("quiet")})
	require.NoError(t, err)
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	require.NoError(t, fr.WriteData(1, true, append(body, msg...)))
	return conn, fr, maxStreams
}

// nextPing reads frames until a PING from the member (not an ACK) and
// fails if the stream ends first.
func nextPing(t *testing.T, fr *http2.Framer) *http2.PingFrame {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err, "no PING before the connection ended")
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				return f
			}
		case *http2.HeadersFrame:
			require.False(t, f.StreamEnded(), "the member ended the watch stream")
		case *http2.RSTStreamFrame:
			t.Fatalf("the member reset the watch stream: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("the member sent GOAWAY: %v", f.ErrCode)
		}
	}
}

// A quiet stream (a watch of a key nobody writes, a Lock.Acquire wait)
// got no HTTP/2 traffic from the member, and a NAT or load balancer
// between client and member dropped its connection in silence. The
// member now pings a connection on which nothing arrived for
// --http2-ping-interval (30 s; 1 s here), and closes it when the client
// does not answer within --http2-ping-timeout (15 s; 1 s here): the
// configured values are the server's, as neither default would ping, or
// close the connection, before the deadlines below.
func TestQuietStreamsArePinged(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.HTTP2PingInterval, cfg.HTTP2PingTimeout = time.Second, time.Second
	}})
	conn, fr, _ := h2cWatch(t, c.Endpoints()[0])
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	// Answered pings keep the connection and its stream open.
	for range 3 {
		p := nextPing(t, fr)
		require.NoError(t, fr.WritePing(true, p.Data))
	}
	// A client that answers no more is cut off: the member closes the
	// connection within the ping interval and timeout.
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	for {
		_, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "the member kept a connection that answers no ping")
			break
		}
	}
}

// --disable-http2-pings sends none, whatever the interval: a quiet
// stream's connection gets no PING (and is not closed for not answering
// one).
func TestHTTP2PingsCanBeTurnedOff(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.HTTP2PingInterval, cfg.HTTP2PingTimeout, cfg.DisableHTTP2Pings = time.Second, time.Second, true
	}})
	conn, fr, _ := h2cWatch(t, c.Endpoints()[0])
	// Three intervals and a timeout, without a ping.
	require.NoError(t, conn.SetDeadline(time.Now().Add(4*time.Second)))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			require.True(t, errors.As(err, &ne) && ne.Timeout(), "the connection ended: %v", err)
			break
		}
		if p, ok := f.(*http2.PingFrame); ok {
			require.True(t, p.IsAck(), "the member pinged with --disable-http2-pings")
		}
		if h, ok := f.(*http2.HeadersFrame); ok {
			require.False(t, h.StreamEnded(), "the member ended the watch stream")
		}
	}
}

// --max-concurrent-streams is what the member's SETTINGS give.
func TestMaxConcurrentStreamsFlag(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.MaxConcurrentStreams = 1234 }})
	_, _, maxStreams := h2cWatch(t, c.Endpoints()[0])
	require.Equal(t, uint32(1234), maxStreams, "SETTINGS_MAX_CONCURRENT_STREAMS")
}

// The default is 10,000 streams a connection, as before the flag.
func TestDefaultMaxConcurrentStreams(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	_, _, maxStreams := h2cWatch(t, c.Endpoints()[0])
	require.Equal(t, uint32(10_000), maxStreams)
}
