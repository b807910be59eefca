// concord: tests of the binary AppendEntries encoding (concord_binary.go).

package raft

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

func randomBytes(rng *rand.Rand, max int) []byte {
	n := rng.Intn(max + 1)
	if n == 0 {
		return nil // the encoding reads an empty byte string as nil
	}
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func randomAppendRequest(rng *rand.Rand) *AppendEntriesRequest {
	req := &AppendEntriesRequest{
		RPCHeader:         RPCHeader{ProtocolVersion: ProtocolVersion(rng.Intn(4)), ID: randomBytes(rng, 8), Addr: randomBytes(rng, 24)},
		Term:              rng.Uint64() >> uint(rng.Intn(64)),
		Leader:            randomBytes(rng, 24),
		PrevLogEntry:      rng.Uint64() >> uint(rng.Intn(64)),
		PrevLogTerm:       rng.Uint64() >> uint(rng.Intn(64)),
		LeaderCommitIndex: rng.Uint64() >> uint(rng.Intn(64)),
	}
	for i, n := 0, rng.Intn(5); i < n; i++ {
		l := &Log{
			Index:      rng.Uint64() >> uint(rng.Intn(64)),
			Term:       rng.Uint64() >> uint(rng.Intn(64)),
			Type:       LogType(rng.Intn(256)),
			Data:       randomBytes(rng, 300),
			Extensions: randomBytes(rng, 8),
		}
		switch rng.Intn(3) {
		case 1:
			l.AppendedAt = time.Unix(0, rng.Int63())
		case 2:
			l.AppendedAt = time.Unix(0, -rng.Int63n(1<<50))
		}
		req.Entries = append(req.Entries, l)
	}
	return req
}

// encodeRequest returns the frame of req without its type byte.
func encodeRequest(t testing.TB, req *AppendEntriesRequest) []byte {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := writeBinaryRequest(w, req); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.Bytes()[0] != rpcAppendEntriesBinary {
		t.Fatalf("frame starts with %#x, not the RPC type", buf.Bytes()[0])
	}
	return buf.Bytes()[1:]
}

func decodeFrame(frame []byte) ([]byte, error) {
	return readBinaryFrame(bufio.NewReader(bytes.NewReader(frame)))
}

// sameTimes compares times by instant, as the encoding keeps no location.
func sameRequests(a, b *AppendEntriesRequest) bool {
	if len(a.Entries) != len(b.Entries) {
		return false
	}
	ac, bc := *a, *b
	ac.Entries, bc.Entries = nil, nil
	if !reflect.DeepEqual(ac, bc) {
		return false
	}
	for i := range a.Entries {
		x, y := *a.Entries[i], *b.Entries[i]
		if !x.AppendedAt.Equal(y.AppendedAt) || x.AppendedAt.IsZero() != y.AppendedAt.IsZero() {
			return false
		}
		x.AppendedAt, y.AppendedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func TestBinaryRequestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		req := randomAppendRequest(rng)
		frame := encodeRequest(t, req)
		body, err := decodeFrame(frame)
		if err != nil {
			t.Fatalf("request %d: frame: %v", i, err)
		}
		if len(body) != binaryRequestLen(req) {
			t.Fatalf("request %d: body is %d bytes, the length said %d", i, len(body), binaryRequestLen(req))
		}
		got, err := decodeBinaryRequest(body)
		if err != nil {
			t.Fatalf("request %d: decode: %v", i, err)
		}
		if !sameRequests(req, got) {
			t.Fatalf("request %d: round trip changed it:\n%#v\n%#v", i, req, got)
		}
	}
}

func TestBinaryResponseRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 1000; i++ {
		resp := AppendEntriesResponse{
			RPCHeader:      RPCHeader{ProtocolVersion: ProtocolVersion(rng.Intn(4)), ID: randomBytes(rng, 8), Addr: randomBytes(rng, 24)},
			Term:           rng.Uint64() >> uint(rng.Intn(64)),
			LastLog:        rng.Uint64() >> uint(rng.Intn(64)),
			Success:        rng.Intn(2) == 0,
			NoRetryBackoff: rng.Intn(2) == 0,
		}
		rpcErr := string(randomBytes(rng, 40))
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeBinaryResponse(w, rpcErr, &resp); err != nil {
			t.Fatal(err)
		}
		_ = w.Flush()
		var got AppendEntriesResponse
		err := readBinaryResponse(bufio.NewReader(&buf), &got)
		if rpcErr == "" && err != nil || rpcErr != "" && (err == nil || err.Error() != rpcErr) {
			t.Fatalf("response %d: error %v, want %q", i, err, rpcErr)
		}
		if !reflect.DeepEqual(resp, got) {
			t.Fatalf("response %d: round trip changed it:\n%#v\n%#v", i, resp, got)
		}
	}
}

// Every truncation of a valid frame, and the frame with bytes added, is
// refused without a panic.
func TestBinaryRequestRefusesDamage(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 200; i++ {
		req := randomAppendRequest(rng)
		frame := encodeRequest(t, req)
		body, err := decodeFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		for cut := 0; cut < len(body); cut++ {
			if _, err := decodeBinaryRequest(body[:cut]); !errors.Is(err, ErrBinaryFrame) {
				t.Fatalf("request %d cut to %d of %d bytes: error %v, want ErrBinaryFrame", i, cut, len(body), err)
			}
		}
		for cut := 0; cut < len(frame); cut++ {
			if _, err := decodeFrame(frame[:cut]); err == nil && cut < len(frame) {
				t.Fatalf("request %d: frame cut to %d of %d bytes was read whole", i, cut, len(frame))
			}
		}
		if _, err := decodeBinaryRequest(append(bytes.Clone(body), 0)); !errors.Is(err, ErrBinaryFrame) {
			t.Fatalf("request %d with a trailing byte: error %v", i, err)
		}
	}
}

func TestBinaryFrameLimits(t *testing.T) {
	// A length over the limit is refused before anything is read.
	huge := bytes.NewBuffer(nil)
	var tmp [10]byte
	n := putUvarint(tmp[:], maxBinaryFrame+1)
	huge.Write(tmp[:n])
	if _, err := decodeFrame(huge.Bytes()); !errors.Is(err, ErrBinaryFrame) {
		t.Fatalf("oversized frame: %v", err)
	}
	// A large announced length with few bytes behind it fails as a short
	// read, not as an allocation of the announced size.
	n = putUvarint(tmp[:], maxBinaryFrame)
	if _, err := decodeFrame(append(tmp[:n:n], 1, 2, 3)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short large frame: %v", err)
	}
	// An entry count the body cannot hold is refused before allocating.
	body := []byte{0, 0, 0, 1, 0, 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeBinaryRequest(body); !errors.Is(err, ErrBinaryFrame) {
		t.Fatalf("impossible entry count: %v", err)
	}
	// Unknown response flags are refused.
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	_ = writeBinaryResponse(w, "", &AppendEntriesResponse{Success: true})
	_ = w.Flush()
	frame := buf.Bytes()
	frame[len(frame)-1] |= 4
	if err := readBinaryResponse(bufio.NewReader(bytes.NewReader(frame)), &AppendEntriesResponse{}); !errors.Is(err, ErrBinaryFrame) {
		t.Fatalf("unknown flag: %v", err)
	}
}

func putUvarint(b []byte, v uint64) int {
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// An upstream member decodes a marked msgpack response: the mark is a
// field it does not know, which msgpack skips.
func TestMarkedResponseDecodesUpstream(t *testing.T) {
	type upstreamResponse struct {
		RPCHeader
		Term           uint64
		LastLog        uint64
		Success        bool
		NoRetryBackoff bool
	}
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(&AppendEntriesResponse{Term: 7, LastLog: 9, Success: true, ConcordBinary: true}); err != nil {
		t.Fatal(err)
	}
	var got upstreamResponse
	if err := codec.NewDecoder(&buf, &codec.MsgpackHandle{}).Decode(&got); err != nil {
		t.Fatalf("upstream decode of a marked response: %v", err)
	}
	if got.Term != 7 || got.LastLog != 9 || !got.Success {
		t.Fatalf("decoded %+v", got)
	}
}

// exchange serves one AppendEntries on trans and returns what it received.
func serveOne(t *testing.T, trans *NetworkTransport, resp *AppendEntriesResponse) <-chan *AppendEntriesRequest {
	got := make(chan *AppendEntriesRequest, 1)
	go func() {
		select {
		case rpc := <-trans.Consumer():
			got <- rpc.Command.(*AppendEntriesRequest)
			rpc.Respond(resp, nil)
		case <-time.After(5 * time.Second):
			t.Errorf("no request came")
			close(got)
		}
	}()
	return got
}

func newTestTCPTransport(t *testing.T, bind string, noBinary bool) *NetworkTransport {
	trans, err := NewTCPTransportWithConfig(bind, nil, &NetworkTransportConfig{
		MaxPool: 2, MaxRPCsInFlight: 16, Timeout: 2 * time.Second, Logger: newTestLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	trans.noBinary = noBinary
	return trans
}

// A transport speaks msgpack until its peer's answer says it reads binary,
// then binary; to a peer that never says so (an upstream build) it keeps
// msgpack; and when a peer that did is replaced by one that does not, one
// request fails and the next goes in msgpack.
func TestBinaryNegotiation(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	follower := newTestTCPTransport(t, "127.0.0.1:0", false)
	addr := follower.LocalAddr()
	leader := newTestTCPTransport(t, "127.0.0.1:0", false)
	defer func() { _ = leader.Close() }()

	want := AppendEntriesResponse{Term: 3, LastLog: 11, Success: true}
	send := func(step string) error {
		t.Helper()
		req := randomAppendRequest(rng)
		got := serveOne(t, follower, &want)
		var out AppendEntriesResponse
		if err := leader.AppendEntries("f", addr, req, &out); err != nil {
			return err
		}
		if r := <-got; r == nil || !sameRequests(req, r) {
			t.Fatalf("%s: the follower received\n%#v\nnot\n%#v", step, r, req)
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("%s: response %#v, want %#v", step, out, want)
		}
		return nil
	}
	if leader.binaryPeer(addr) {
		t.Fatal("binary before the peer said anything")
	}
	if err := send("first request"); err != nil {
		t.Fatal(err)
	}
	if !leader.binaryPeer(addr) {
		t.Fatal("the follower's answer did not switch the leader to binary")
	}
	if err := send("binary request"); err != nil {
		t.Fatal(err)
	}

	// The same address now serves a transport that does not read binary.
	_ = follower.Close()
	old := newTestTCPTransport(t, string(addr), true)
	defer func() { _ = old.Close() }()
	follower = old
	if err := leader.AppendEntries("f", addr, randomAppendRequest(rng), &AppendEntriesResponse{}); err == nil {
		t.Fatal("a binary request to an upstream member succeeded")
	}
	if leader.binaryPeer(addr) {
		t.Fatal("the failed binary request did not switch the leader back to msgpack")
	}
	for i := 0; i < 3; i++ {
		if err := send("msgpack request to the upstream member"); err != nil {
			t.Fatal(err)
		}
		if leader.binaryPeer(addr) {
			t.Fatal("an upstream member's answer switched the leader to binary")
		}
	}
}

// The pipeline switches to binary in the middle of a stream of requests
// and answers each in order.
func TestBinaryPipeline(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	follower := newTestTCPTransport(t, "127.0.0.1:0", false)
	defer func() { _ = follower.Close() }()
	leader := newTestTCPTransport(t, "127.0.0.1:0", false)
	defer func() { _ = leader.Close() }()

	const n = 12 // below MaxRPCsInFlight-2: the answers are read after all are sent
	reqs := make([]*AppendEntriesRequest, n)
	for i := range reqs {
		reqs[i] = randomAppendRequest(rng)
		reqs[i].Term = uint64(i + 1) // so the answer can name its request
	}
	go func() {
		for i := 0; i < n; i++ {
			select {
			case rpc := <-follower.Consumer():
				req := rpc.Command.(*AppendEntriesRequest)
				if !sameRequests(reqs[i], req) {
					t.Errorf("request %d arrived as\n%#v\nnot\n%#v", i, req, reqs[i])
				}
				rpc.Respond(&AppendEntriesResponse{Term: req.Term, LastLog: uint64(len(req.Entries)), Success: true}, nil)
			case <-time.After(5 * time.Second):
				t.Errorf("request %d never came", i)
				return
			}
		}
	}()

	pipe, err := leader.AppendEntriesPipeline("f", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pipe.Close() }()
	binary := 0
	for i := 0; i < n; i++ {
		if leader.binaryPeer(follower.LocalAddr()) {
			binary++
		}
		if _, err := pipe.AppendEntries(reqs[i], &AppendEntriesResponse{}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Let the first answer come back, so the rest go binary.
			f := <-pipe.Consumer()
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			if f.Response().Term != 1 {
				t.Fatalf("answer of request 1 has term %d", f.Response().Term)
			}
		}
	}
	for i := 1; i < n; i++ {
		f := <-pipe.Consumer()
		if err := f.Error(); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if f.Response().Term != uint64(i+1) || f.Response().LastLog != uint64(len(reqs[i].Entries)) {
			t.Fatalf("answer %d is %+v", i+1, f.Response())
		}
	}
	if binary != n-1 {
		t.Fatalf("%d of %d requests went binary, want all after the first", binary, n)
	}
}

func FuzzBinaryAppendRequest(f *testing.F) {
	rng := rand.New(rand.NewSource(6))
	for i := 0; i < 8; i++ {
		f.Add(encodeRequest(f, randomAppendRequest(rng)))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		body, err := decodeFrame(frame)
		if err != nil {
			return
		}
		req, err := decodeBinaryRequest(body)
		if err != nil {
			if !errors.Is(err, ErrBinaryFrame) {
				t.Fatalf("error %v is not ErrBinaryFrame", err)
			}
			return
		}
		again, err := decodeBinaryRequest(encodeRequest(t, req)[uvarintLen(uint64(binaryRequestLen(req))):])
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if !sameRequests(req, again) {
			t.Fatalf("re-encoding changed the request:\n%#v\n%#v", req, again)
		}
	})
}

func FuzzBinaryAppendResponse(f *testing.F) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	_ = writeBinaryResponse(w, "boom", &AppendEntriesResponse{Term: 5, LastLog: 99, Success: true, RPCHeader: RPCHeader{ID: []byte("n1")}})
	_ = w.Flush()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, frame []byte) {
		var resp AppendEntriesResponse
		err := readBinaryResponse(bufio.NewReader(bytes.NewReader(frame)), &resp)
		if err != nil && errors.Is(err, ErrBinaryFrame) && !reflect.DeepEqual(resp, AppendEntriesResponse{}) {
			t.Fatalf("a refused frame changed the response: %+v", resp)
		}
	})
}
