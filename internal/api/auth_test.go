package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A request without the token is refused before its body is read: a
// client without it learns nothing from how its input is judged, and
// cannot make the member decompress a body.
func TestRequestsWithoutTheTokenAreRefusedBeforeTheirBodyIsRead(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	base := "http://" + c.Endpoints()[0]
	do := func(body string, hdr map[string]string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, base+"/concord.v1.KV/Put", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return send(t, req)
	}
	for name, tc := range map[string]struct {
		body string
		hdr  map[string]string
	}{
		"malformed json":      {`{"key":`, nil},
		"unknown field":       {`{"nope":1}`, nil},
		"not gzip":            {"not gzip at all", map[string]string{"Content-Encoding": "gzip"}},
		"wrong token":         {`{"key":`, map[string]string{"Authorization": "Bearer wrong"}},
		"too large for limit": {`{"key":"aGk=","value":"` + strings.Repeat("A", 4<<20) + `"}`, nil},
	} {
		t.Run(name, func(t *testing.T) {
			status, out := do(tc.body, tc.hdr)
			require.Equal(t, http.StatusUnauthorized, status, "%v", out)
			require.Equal(t, "unauthenticated", out["code"])
			details, _ := out["details"].([]any)
			require.NotEmpty(t, details, "%v", out)
			require.Equal(t, "UNAUTHENTICATED", details[0].(map[string]any)["debug"].(map[string]any)["reason"])
		})
	}
	status, out := do(`{"key":`, map[string]string{"Authorization": "Bearer s3cret"})
	require.Equal(t, http.StatusBadRequest, status, "with the token, the body is judged: %v", out)

	// Over gRPC too, with the reason the SDK maps.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	kv := concordv1connect.NewKVClient(h2c, base, connect.WithGRPC())
	_, err := kv.Put(context.Background(), connect.NewRequest(&concordv1.PutRequest{Key: []byte("k")}))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "%v", err)
	require.Equal(t, "UNAUTHENTICATED", errs.ReasonOf(errs.FromConnect(err), ""))
}

// send sends req and decodes the JSON body of the answer.
func send(t *testing.T, req *http.Request) (int, map[string]any) {
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// The scheme of an Authorization header is case-insensitive (RFC 9110,
// section 11.1): clients that send "bearer" are let in on every path.
func TestTheBearerSchemeIsCaseInsensitive(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	base := "http://" + c.Endpoints()[0]
	for _, header := range []string{"bearer s3cret", "BEARER s3cret", "Bearer  s3cret"} {
		req, err := http.NewRequest(http.MethodPost, base+"/concord.v1.KV/Put", strings.NewReader(`{"key":"aw=="}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", header)
		status, out := send(t, req)
		require.Equal(t, http.StatusOK, status, "%q: %v", header, out)
		req, err = http.NewRequest(http.MethodGet, base+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", header)
		status, _ = send(t, req)
		require.Equal(t, http.StatusOK, status, "%q on /metrics", header)
	}
	for _, header := range []string{"Basic s3cret", "Bearers3cret", "Bearer s3cret2", "Bearer", "s3cret"} {
		req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", header)
		status, _ := send(t, req)
		require.Equal(t, http.StatusUnauthorized, status, "%q on /metrics", header)
	}
}

// A call refused for its token is counted in concord_api_requests_total
// with code unauthenticated, as every RPC is (docs/kv.md): refusing it
// before its body is read dropped it from the metrics, and a client with
// a wrong token went unseen. A path that names no method is not counted
// (its name would be a label value of the caller's choosing).
func TestRefusedTokensAreCounted(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	base := "http://" + c.Endpoints()[0]
	for _, path := range []string{"/concord.v1.KV/Put", "/concord.v1.KV/Put", "/concord.v1.Session/Create", "/concord.v1.KV/NoSuchMethod"} {
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		status, out := send(t, req)
		require.Equal(t, http.StatusUnauthorized, status, "%s: %v", path, out)
	}
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var counted []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, `concord_api_requests_total{code="unauthenticated"`) {
			counted = append(counted, line)
		}
	}
	require.ElementsMatch(t, []string{
		`concord_api_requests_total{code="unauthenticated",method="KV/Put"} 2`,
		`concord_api_requests_total{code="unauthenticated",method="Session/Create"} 1`,
	}, counted)
}
