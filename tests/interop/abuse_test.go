package interop_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-dev/concord/internal/testcluster"
)

// bomb returns a gzip stream of a PutRequest whose value is n zero bytes:
// small on the wire, n bytes once decompressed.
func bomb(t *testing.T, n int) []byte {
	t.Helper()
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte("bomb"))
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendVarint(msg, uint64(n))
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(msg)
	require.NoError(t, err)
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zeros) {
		_, err = zw.Write(zeros[:min(left, len(zeros))])
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// allocated runs f and returns the bytes the process allocated meanwhile
// (the member runs in it).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

var h2c = func() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}()

// grpcStatus reads the grpc-status of a gRPC answer: from its trailers,
// or from its headers for a trailers-only answer.
func grpcStatus(t *testing.T, resp *http.Response) codes.Code {
	t.Helper()
	_, err := io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	s := resp.Trailer.Get("Grpc-Status")
	if s == "" {
		s = resp.Header.Get("Grpc-Status")
	}
	require.NotEmpty(t, s, "no grpc-status: %v %v", resp.Header, resp.Trailer)
	var c uint32
	_, err = fmt.Sscan(s, &c)
	require.NoError(t, err)
	return codes.Code(c)
}

// Abusive input on the paths another language's client uses is refused
// without a crash and without allocating what it claims: a gzip-compressed
// gRPC message that inflates to 256 MiB, the same as the body of a unary
// JSON or binary call, and an enveloped message whose length prefix
// promises 4 GiB, each with REQUEST_TOO_LARGE. The member goes on serving.
func TestAbusiveInputIsBounded(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	base := "http://" + c.Endpoints()[0]
	const inflated = 256 << 20
	z := bomb(t, inflated)
	require.Less(t, len(z), 1<<20, "the bomb is small on the wire")
	const bound = 64 << 20 // far below what the bomb inflates to

	t.Run("grpc gzip message", func(t *testing.T) {
		body := append([]byte{1, 0, 0, 0, 0}, z...)
		binary.BigEndian.PutUint32(body[1:], uint32(len(z)))
		var code codes.Code
		n := allocated(func() {
			req, err := http.NewRequest(http.MethodPost, base+"/concord.v1.KV/Put", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			req.Header.Set("Grpc-Encoding", "gzip")
			resp, err := h2c.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			code = grpcStatus(t, resp)
		})
		require.Equal(t, codes.InvalidArgument, code, "REQUEST_TOO_LARGE")
		require.Less(t, n, uint64(bound), "allocated %d bytes for a %d-byte message", n, len(z))
	})
	t.Run("connect unary gzip body", func(t *testing.T) {
		for _, ct := range []string{"application/proto", "application/json"} {
			var status int
			var out string
			n := allocated(func() {
				req, err := http.NewRequest(http.MethodPost, base+"/concord.v1.KV/Put", bytes.NewReader(z))
				require.NoError(t, err)
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Content-Encoding", "gzip")
				resp, err := http1.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				status, out = resp.StatusCode, string(b)
			})
			require.Equal(t, http.StatusBadRequest, status, "%s: %s", ct, out)
			require.Contains(t, out, `"reason":"REQUEST_TOO_LARGE"`)
			require.Less(t, n, uint64(bound), "%s: allocated %d bytes for a %d-byte body", ct, n, len(z))
		}
	})
	t.Run("enveloped message promising 4 GiB", func(t *testing.T) {
		for _, tc := range []struct{ ct, path string }{
			{"application/connect+json", "/concord.v1.Lock/Acquire"},
			{"application/connect+proto", "/concord.v1.KV/Watch"},
		} {
			var end string
			n := allocated(func() {
				body := append([]byte{0, 0xff, 0xff, 0xff, 0xff}, strings.Repeat("{", 1024)...)
				req, err := http.NewRequest(http.MethodPost, base+tc.path, bytes.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Content-Type", tc.ct)
				resp, err := http1.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				end = string(b)
			})
			require.Contains(t, end, `"reason":"REQUEST_TOO_LARGE"`, tc.ct)
			require.Less(t, n, uint64(bound), "%s: allocated %d bytes", tc.ct, n)
		}
	})

	// Still serving.
	status, out := postJSON(t, base, "/concord.v1.KV/Put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("after"), b64("ok")))
	require.Equal(t, http.StatusOK, status, "%v", out)
	status, out = postJSON(t, base, "/concord.v1.KV/Range", fmt.Sprintf(`{"key":%q}`, b64("bomb")))
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Nil(t, out["kvs"], "nothing written")
}
