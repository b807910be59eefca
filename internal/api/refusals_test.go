package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/internal/config"
)

// otherCodec is a codec the member does not take: connect-go clients
// that use it get Connect's 415.
type otherCodec struct{}

func (otherCodec) Name() string                    { return "xml" }
func (otherCodec) Marshal(m any) ([]byte, error)   { return proto.Marshal(m.(proto.Message)) }
func (otherCodec) Unmarshal(b []byte, m any) error { return proto.Unmarshal(b, m.(proto.Message)) }

// TestRefusalsKeepConnectCallsWorking: the refusal wrapper sits in front of
// every Connect request. Through it, a Connect GET of a large range comes
// back compressed and whole, a Connect bidirectional stream over HTTP/2
// runs full duplex (each keep-alive answered before the next is sent),
// and the requests Connect refuses (a codec it does not take, unary and
// streaming) reach a connect-go
// client as INVALID_ARGUMENT with the message saying how to call it.
func TestRefusalsKeepConnectCallsWorking(t *testing.T) {
	c, _ := single(t, func(cfg *config.Server) {
		cfg.Limits.MaxValueBytes = 4096
		cfg.Limits.MaxRequestBytes = 16 << 10
	})
	base := "http://" + c.Endpoints()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A Connect GET of a range above the compression threshold (64 KiB).
	kv := concordv1connect.NewKVClient(http2Client(), base)
	value := []byte(strings.Repeat("v", 4000))
	for i := range 40 {
		_, err := kv.Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: fmt.Appendf(nil, "big/%02d", i), Value: value}))
		require.NoError(t, err)
	}
	for _, hc := range []*http.Client{http.DefaultClient, http2Client()} {
		get := concordv1connect.NewKVClient(hc, base, connect.WithHTTPGet(), connect.WithAcceptCompression("gzip", nil, nil))
		resp, err := get.Range(ctx, connect.NewRequest(&concordv1.RangeRequest{Key: []byte("big/"), RangeEnd: []byte("big0")}))
		require.NoError(t, err)
		require.Len(t, resp.Msg.GetKvs(), 40)
		for _, e := range resp.Msg.GetKvs() {
			require.Equal(t, value, e.GetValue())
		}
	}

	// A Connect bidirectional stream over HTTP/2, full duplex.
	sessions := concordv1connect.NewSessionClient(http2Client(), base)
	created, err := sessions.Create(ctx, connect.NewRequest(&concordv1.CreateSessionRequest{TtlMs: 10_000}))
	require.NoError(t, err)
	id := created.Msg.GetId()
	stream := sessions.KeepAlive(ctx)
	for range 3 {
		require.NoError(t, stream.Send(&concordv1.KeepAliveRequest{Id: id}))
		resp, err := stream.Receive()
		require.NoError(t, err, "each keep-alive is answered while the stream stays open")
		require.Equal(t, id, resp.GetId())
	}
	require.NoError(t, stream.CloseRequest())
	require.NoError(t, stream.CloseResponse())

	// What Connect refuses decodes to INVALID_ARGUMENT in connect-go.
	odd := concordv1connect.NewSessionClient(http2Client(), base, connect.WithCodec(otherCodec{}))
	_, err = odd.Create(ctx, connect.NewRequest(&concordv1.CreateSessionRequest{TtlMs: 10_000}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "unary, another codec: %v", err)
	require.Contains(t, err.Error(), "application/json")

	oddStream := odd.KeepAlive(ctx)
	_ = oddStream.Send(&concordv1.KeepAliveRequest{Id: id})
	_, err = oddStream.Receive()
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "bidi stream, another codec: %v", err)
	require.Contains(t, err.Error(), "application/connect+json")
	_ = oddStream.CloseRequest()
	_ = oddStream.CloseResponse()

	// (A connect-go client refuses a bidirectional stream over HTTP/1.1
	// itself, as unimplemented, before it reads the member's answer.)
}

// A Connect GET of an idempotent call with an encoding the member does not
// take (no body at all) was told that it carried its request in a body;
// it is told which encodings the call takes. A GET with a body is still
// told to put the request in the URL.
func TestRefusedGetSaysWhatIsWrong(t *testing.T) {
	c, _ := single(t, nil)
	base := "http://" + c.Endpoints()[0] + concordv1connect.KVRangeProcedure
	refused := func(req *http.Request) string {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, "%s", body)
		var e struct{ Code, Message string }
		require.NoError(t, json.Unmarshal(body, &e), "%s", body)
		require.Equal(t, "invalid_argument", e.Code)
		return e.Message
	}
	q := url.Values{"connect": {"v1"}, "encoding": {"xml"}, "message": {`{"key":"YQ=="}`}}
	req, err := http.NewRequest(http.MethodGet, base+"?"+q.Encode(), nil)
	require.NoError(t, err)
	msg := refused(req)
	require.NotContains(t, msg, "not in a body", "a GET without a body")
	require.Contains(t, msg, `"xml"`)
	require.Contains(t, msg, "encoding=json")

	q.Set("encoding", "json")
	req, err = http.NewRequest(http.MethodGet, base+"?"+q.Encode(), strings.NewReader("{}"))
	require.NoError(t, err)
	require.Contains(t, refused(req), "not in a body")
}
