package interop_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// http1 is a plain HTTP/1.1 client, as curl or any language's HTTP
// library would be without HTTP/2.
var http1 = &http.Client{Transport: &http.Transport{}}

// postJSON posts a unary Connect call with a JSON body and decodes the
// JSON answer.
func postJSON(t *testing.T, base, procedure, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+procedure, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http1.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 1, resp.ProtoMajor, "plain HTTP/1.1")
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "%s", b)
	return resp.StatusCode, out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// envelope frames one message of the Connect streaming protocol: a flags
// byte, a big-endian uint32 length, the message.
func envelope(flags byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// connectStream reads the enveloped messages of a Connect streaming
// answer: each message, and finally the end-of-stream message (flag 0x02).
type connectStream struct {
	t    *testing.T
	resp *http.Response
}

func openStream(t *testing.T, base, procedure, body string, hdr ...string) *connectStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+procedure, bytes.NewReader(envelope(0, []byte(body))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/connect+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http1.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, 1, resp.ProtoMajor, "plain HTTP/1.1")
	require.Equal(t, http.StatusOK, resp.StatusCode, "a stream answers 200 and carries its error at its end")
	require.Equal(t, "application/connect+json", resp.Header.Get("Content-Type"))
	return &connectStream{t: t, resp: resp}
}

// next returns the next message, and whether it ends the stream.
func (s *connectStream) next() (map[string]any, bool) {
	s.t.Helper()
	var prefix [5]byte
	_, err := io.ReadFull(s.resp.Body, prefix[:])
	require.NoError(s.t, err)
	msg := make([]byte, binary.BigEndian.Uint32(prefix[1:]))
	_, err = io.ReadFull(s.resp.Body, msg)
	require.NoError(s.t, err)
	var out map[string]any
	require.NoError(s.t, json.Unmarshal(msg, &out), "%s", msg)
	return out, prefix[0]&0x02 != 0
}

// message returns the next message, which must not end the stream.
func (s *connectStream) message() map[string]any {
	s.t.Helper()
	m, end := s.next()
	require.False(s.t, end, "stream ended: %v", m)
	return m
}

// end returns the end-of-stream message, which must come next.
func (s *connectStream) end() map[string]any {
	s.t.Helper()
	m, end := s.next()
	require.True(s.t, end, "not the end of the stream: %v", m)
	return m
}

// reasonAt reads details[0].debug.reason of a Connect error object.
func reasonAt(t *testing.T, e any) string {
	t.Helper()
	obj, _ := e.(map[string]any)
	details, _ := obj["details"].([]any)
	require.NotEmpty(t, details, "error without details: %v", e)
	d, _ := details[0].(map[string]any)
	require.Equal(t, "concord.v1.ErrorInfo", d["type"], "%v", e)
	debug, _ := d["debug"].(map[string]any)
	reason, _ := debug["reason"].(string)
	return reason
}

// Unary JSON calls from a plain HTTP/1.1 client: put, range, and the
// errors in the shape docs/errors.md gives (status, code, reason at
// details[0].debug.reason).
func TestHTTPJSONUnaryKV(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	base := "http://" + c.Endpoints()[0]

	status, out := postJSON(t, base, "/concord.v1.KV/Put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("greeting"), b64("hello")))
	require.Equal(t, http.StatusOK, status, "%v", out)
	rev := out["header"].(map[string]any)["revision"]
	require.NotEmpty(t, rev)

	status, out = postJSON(t, base, "/concord.v1.KV/Range", fmt.Sprintf(`{"key":%q}`, b64("greeting")))
	require.Equal(t, http.StatusOK, status, "%v", out)
	kvs := out["kvs"].([]any)
	require.Len(t, kvs, 1)
	require.Equal(t, b64("hello"), kvs[0].(map[string]any)["value"])
	require.Equal(t, rev, kvs[0].(map[string]any)["modRevision"])

	status, out = postJSON(t, base, "/concord.v1.KV/Range", fmt.Sprintf(`{"key":%q,"prefix":true,"limit":"10"}`, b64("greet")))
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Len(t, out["kvs"], 1)

	for _, tc := range []struct {
		name, procedure, body string
		status                int
		code, reason          string
	}{
		{"empty key", "/concord.v1.KV/Put", `{"value":"aGk="}`, 400, "invalid_argument", "EMPTY_KEY"},
		{"bad range", "/concord.v1.KV/Range", fmt.Sprintf(`{"key":%q,"range_end":%q}`, b64("b"), b64("a")), 400, "invalid_argument", "INVALID_RANGE"},
		{"unknown session", "/concord.v1.KV/Put", fmt.Sprintf(`{"key":%q,"value":"aGk=","session":"987654321"}`, b64("k")), 404, "not_found", "SESSION_NOT_FOUND"},
		{"counter out of range", "/concord.v1.KV/Add", fmt.Sprintf(`{"key":%q,"delta":"-1","min":"0"}`, b64("stock")), 400, "failed_precondition", "OUT_OF_RANGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := postJSON(t, base, tc.procedure, tc.body)
			require.Equal(t, tc.status, status, "%v", out)
			require.Equal(t, tc.code, out["code"], "%v", out)
			require.Equal(t, tc.reason, reasonAt(t, out))
		})
	}
	// A field the schema does not know is refused, without a reason.
	status, out = postJSON(t, base, "/concord.v1.KV/Put", `{"key":"aGk=","valeu":"aGk="}`)
	require.Equal(t, http.StatusBadRequest, status, "%v", out)
	require.Equal(t, "invalid_argument", out["code"])
}

// Locks from plain HTTP/1.1: a session from Session/Create, Lock.Acquire
// as a Connect server stream (application/connect+json, enveloped
// messages) that says QUEUED and then GRANTED when the holder releases by
// a unary Lock/Release, Lock/Inspect in between, and an acquire that fails
// ending its stream with the error in the documented shape.
func TestHTTPJSONLockAcquireStream(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	base := "http://" + c.Endpoints()[0]
	session := func() string {
		status, out := postJSON(t, base, "/concord.v1.Session/Create", `{"ttl_ms":"30000","name":"curl"}`)
		require.Equal(t, http.StatusOK, status, "%v", out)
		return out["id"].(string)
	}
	s1, s2 := session(), session()

	a := openStream(t, base, "/concord.v1.Lock/Acquire",
		fmt.Sprintf(`{"claims":[{"name":"m","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"a","wait":true}`, s1))
	granted := a.message()
	require.Equal(t, "ACQUIRE_STATE_GRANTED", granted["state"], "%v", granted)
	tokenA := granted["token"].(string)

	b := openStream(t, base, "/concord.v1.Lock/Acquire",
		fmt.Sprintf(`{"claims":[{"name":"m","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"b","wait":true}`, s2))
	queued := b.message()
	require.Equal(t, "ACQUIRE_STATE_QUEUED", queued["state"], "%v", queued)
	require.NotEmpty(t, queued["waiter"])

	status, out := postJSON(t, base, "/concord.v1.Lock/Inspect", `{"name":"m"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	holders := out["lock"].(map[string]any)["holders"].([]any)
	require.Len(t, holders, 1)
	require.Equal(t, tokenA, holders[0].(map[string]any)["token"])
	require.Len(t, out["lock"].(map[string]any)["waiters"], 1)

	status, out = postJSON(t, base, "/concord.v1.Lock/Release", fmt.Sprintf(`{"names":["m"],"session":%q,"owner":"a"}`, s1))
	require.Equal(t, http.StatusOK, status, "%v", out)
	// The holder's stream ends cleanly: an end-of-stream message without
	// an error.
	endA := a.end()
	require.Nil(t, endA["error"], "%v", endA)

	done := make(chan map[string]any, 1)
	go func() { done <- b.message() }()
	select {
	case grantedB := <-done:
		require.Equal(t, "ACQUIRE_STATE_GRANTED", grantedB["state"], "%v", grantedB)
		require.NotEqual(t, tokenA, grantedB["token"])
	case <-time.After(20 * time.Second):
		t.Fatal("no GRANTED pushed to the waiter within 20 s of the release")
	}

	// Releasing a lock one does not hold: 400, LOCK_NOT_HELD.
	status, out = postJSON(t, base, "/concord.v1.Lock/Release", fmt.Sprintf(`{"names":["m"],"session":%q,"owner":"a"}`, s1))
	require.Equal(t, http.StatusBadRequest, status, "%v", out)
	require.Equal(t, "failed_precondition", out["code"])
	require.Equal(t, "LOCK_NOT_HELD", reasonAt(t, out))

	// A stream that fails answers 200 and carries the error in its last
	// message, at error.details[0].debug.reason.
	bad := openStream(t, base, "/concord.v1.Lock/Acquire",
		`{"claims":[{"name":"m","kind":"LOCK_KIND_MUTEX"}],"session":"987654321","owner":"c","wait":true}`)
	end := bad.end()
	e, _ := end["error"].(map[string]any)
	require.Equal(t, "not_found", e["code"], "%v", end)
	require.Equal(t, "SESSION_NOT_FOUND", reasonAt(t, e))
	bad = openStream(t, base, "/concord.v1.Lock/Acquire", fmt.Sprintf(`{"session":%q,"owner":"c"}`, s2))
	end = bad.end()
	e, _ = end["error"].(map[string]any)
	require.Equal(t, "invalid_argument", e["code"], "%v", end)
	require.Equal(t, "INVALID_LOCK_REQUEST", reasonAt(t, e))
}

// A call posted with a Content-Type it does not take (a streaming call
// posted the way the unary calls are, with application/json, as
// docs/locks.md shows for Release and Inspect; a unary call posted with
// curl -d and no Content-Type) is refused with Connect's 415 and a typed
// error that says how to call it, not with an empty body; a bidirectional
// stream over HTTP/1.1 likewise, with 505. Nothing is applied.
func TestHTTPStreamingCallsPostedAsUnaryGetATypedError(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	base := "http://" + c.Endpoints()[0]
	status, out := postJSON(t, base, "/concord.v1.Session/Create", `{"ttl_ms":"30000"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	sess := out["id"].(string)

	for _, tc := range []struct {
		procedure, body, ct string
		status              int
		hint                string
	}{
		{"/concord.v1.Lock/Acquire", fmt.Sprintf(`{"claims":[{"name":"m","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"o"}`, sess), "application/json", 415, "application/connect+json"},
		{"/concord.v1.Lock/Acquire", "", "application/proto", 415, "application/connect+json"},
		{"/concord.v1.KV/Watch", `{"key":"aGk="}`, "application/json; charset=utf-8", 415, "application/connect+json"},
		{"/concord.v1.Lock/Inspect", `{"name":"m"}`, "application/x-www-form-urlencoded", 415, "application/json"},
		{"/concord.v1.Session/KeepAlive", fmt.Sprintf(`{"id":%q}`, sess), "application/json", 505, "KeepAliveOnce"},
	} {
		t.Run(tc.procedure+" "+tc.ct, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+tc.procedure, strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", tc.ct)
			resp, err := http1.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			require.Equal(t, tc.status, resp.StatusCode, "%s", b)
			var e map[string]any
			require.NoError(t, json.Unmarshal(b, &e), "a JSON error body: %q", b)
			require.Equal(t, "invalid_argument", e["code"])
			require.Equal(t, "INVALID_ARGUMENT", reasonAt(t, e))
			require.Contains(t, e["message"], tc.hint)
		})
	}
	// A bidirectional stream needs HTTP/2: over HTTP/1.1 the stream ends
	// at once with a typed error naming the unary alternative.
	ka := openStream(t, base, "/concord.v1.Session/KeepAlive", fmt.Sprintf(`{"id":%q}`, sess))
	end := ka.end()
	e, _ := end["error"].(map[string]any)
	require.Equal(t, "invalid_argument", e["code"], "%v", end)
	require.Equal(t, "INVALID_ARGUMENT", reasonAt(t, e))
	require.Contains(t, e["message"], "KeepAliveOnce")

	// Nothing was applied: the lock is free.
	status, out = postJSON(t, base, "/concord.v1.Lock/Inspect", `{"name":"m"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Nil(t, out["lock"].(map[string]any)["holders"])
}

// With --auth-token, a plain HTTP client sends "Authorization: Bearer
// ...": a unary call without it is 401 with reason UNAUTHENTICATED, a
// stream without it answers 200 and ends with that error.
func TestHTTPBearerToken(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	base := "http://" + c.Endpoints()[0]
	status, out := postJSON(t, base, "/concord.v1.Lock/Inspect", `{"name":"m"}`)
	require.Equal(t, http.StatusUnauthorized, status, "%v", out)
	require.Equal(t, "UNAUTHENTICATED", reasonAt(t, out))
	end := openStream(t, base, "/concord.v1.Lock/Acquire", `{"claims":[{"name":"m","kind":"LOCK_KIND_MUTEX"}],"session":"1","owner":"o"}`).end()
	e, _ := end["error"].(map[string]any)
	require.Equal(t, "unauthenticated", e["code"], "%v", end)
	require.Equal(t, "UNAUTHENTICATED", reasonAt(t, e))

	status, out = postJSON(t, base, "/concord.v1.Session/Create", `{"ttl_ms":"30000"}`, "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, status, "%v", out)
	s := openStream(t, base, "/concord.v1.Lock/Acquire", fmt.Sprintf(`{"claims":[{"name":"m","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"o"}`, out["id"]), "Authorization", "Bearer s3cret")
	require.Equal(t, "ACQUIRE_STATE_GRANTED", s.message()["state"])
	require.Nil(t, s.end()["error"])
}

// A lock wait and a watch whose deadline (Connect-Timeout-Ms, as gRPC's
// grpc-timeout) passes on the member end with deadline_exceeded, not with
// a clean end: the member ended them with none, and a grpc-go client whose
// own timer fired a moment after the member's read io.EOF, the sign of a
// stream that ended normally (CI, TestGRPCAbandonedWaitStaysQueuedUntilCancelled).
func TestStreamsEndedByTheirDeadlineSaySo(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	base := "http://" + c.Endpoints()[0]
	session := func() string {
		status, out := postJSON(t, base, "/concord.v1.Session/Create", `{"ttl_ms":"30000"}`)
		require.Equal(t, http.StatusOK, status, "%v", out)
		return out["id"].(string)
	}
	s1, s2 := session(), session()
	holder := openStream(t, base, "/concord.v1.Lock/Acquire",
		fmt.Sprintf(`{"claims":[{"name":"d","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"a","wait":true}`, s1))
	require.Equal(t, "ACQUIRE_STATE_GRANTED", holder.message()["state"])

	for name, s := range map[string]*connectStream{
		"a queued lock wait": openStream(t, base, "/concord.v1.Lock/Acquire",
			fmt.Sprintf(`{"claims":[{"name":"d","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"b","wait":true}`, s2),
			"Connect-Timeout-Ms", "500"),
		"a granted lock followed": openStream(t, base, "/concord.v1.Lock/Acquire",
			fmt.Sprintf(`{"claims":[{"name":"e","kind":"LOCK_KIND_MUTEX"}],"session":%q,"owner":"c","wait":true}`, s2),
			"Connect-Timeout-Ms", "500"),
		"a watch": openStream(t, base, "/concord.v1.KV/Watch", `{"key":"`+b64("w")+`"}`, "Connect-Timeout-Ms", "500"),
	} {
		var end map[string]any
		for {
			m, last := s.next()
			if last {
				end = m
				break
			}
		}
		e, _ := end["error"].(map[string]any)
		require.Equal(t, "deadline_exceeded", e["code"], "%s ended with %v", name, end)
	}
}

// Over HTTP/JSON, as curl sends it: an upgrade sent with "conversion"
// answers "converted" (the read grant's token); once the grant is
// force-released, the same conversion answers LOST with reason
// "converted grant ended" and takes nothing.
func TestHTTPJSONLockConversion(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	base := "http://" + c.Endpoints()[0]
	status, out := postJSON(t, base, "/concord.v1.Session/Create", `{"ttl_ms":"30000","name":"curl"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	s := out["id"].(string)
	acquire := func(mode string, conversion bool) map[string]any {
		t.Helper()
		st := openStream(t, base, "/concord.v1.Lock/Acquire",
			fmt.Sprintf(`{"claims":[{"name":"rw","kind":"LOCK_KIND_RWLOCK","mode":%q}],"session":%q,"owner":"o","conversion":%v}`, mode, s, conversion))
		return st.message()
	}
	read := acquire("LOCK_MODE_SHARED", false)
	require.Equal(t, "ACQUIRE_STATE_GRANTED", read["state"], "%v", read)
	require.Nil(t, read["converted"], "granted anew: %v", read)
	up := acquire("LOCK_MODE_EXCLUSIVE", true)
	require.Equal(t, "ACQUIRE_STATE_GRANTED", up["state"], "%v", up)
	require.Equal(t, read["token"], up["converted"], "an upgrade names the read grant it converted: %v", up)
	require.NotEqual(t, read["token"], up["token"])

	status, out = postJSON(t, base, "/concord.v1.Lock/ForceRelease", `{"name":"rw","reason":"drill"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	lost := acquire("LOCK_MODE_SHARED", true)
	require.Equal(t, "ACQUIRE_STATE_LOST", lost["state"], "%v", lost)
	require.Equal(t, "converted grant ended", lost["reason"], "%v", lost)
	status, out = postJSON(t, base, "/concord.v1.Lock/Inspect", `{"name":"rw"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	lk, _ := out["lock"].(map[string]any)
	require.Empty(t, lk["holders"], "a conversion of an ended grant took the lock: %v", out)
}
