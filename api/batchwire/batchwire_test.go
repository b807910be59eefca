package batchwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/vtcodec"
)

func sampleRequest() *concordv1.BatchRequest {
	return &concordv1.BatchRequest{Calls: []*concordv1.BatchCall{
		{Id: 1, TimeoutMs: 5000, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}}},
		{Id: 2, Request: &concordv1.BatchCall_Range{Range: &concordv1.RangeRequest{Key: []byte("k")}}},
	}}
}

// stream writes a message, a ping, a pong and a goaway.
func stream(t *testing.T) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteMessage(sampleRequest()); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePing(FramePing, [PingSize]byte{1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePing(FramePong, [PingSize]byte{8, 7, 6, 5, 4, 3, 2, 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteGoAway("bye"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFramesRoundTrip(t *testing.T) {
	r := NewReader(bufio.NewReader(bytes.NewReader(stream(t))), 1<<20)

	typ, payload, err := r.Next()
	if err != nil || typ != FrameMessage {
		t.Fatalf("first frame: type %d, err %v", typ, err)
	}
	var got concordv1.BatchRequest
	if err := (vtcodec.Codec{}).Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, sampleRequest()) {
		t.Fatalf("message: got %v, want %v", &got, sampleRequest())
	}
	typ, payload, err = r.Next()
	if err != nil || typ != FramePing || !bytes.Equal(payload, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("ping: type %d payload %v err %v", typ, payload, err)
	}
	typ, payload, err = r.Next()
	if err != nil || typ != FramePong || !bytes.Equal(payload, []byte{8, 7, 6, 5, 4, 3, 2, 1}) {
		t.Fatalf("pong: type %d payload %v err %v", typ, payload, err)
	}
	_, _, err = r.Next()
	if !errors.Is(err, ErrGoAway) || !bytes.Contains([]byte(err.Error()), []byte(`"bye"`)) {
		t.Fatalf("goaway: %v", err)
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// Every cut of a valid stream ends in io.EOF at a frame boundary and in
// another error inside a frame, never in a panic or a wrong frame.
func TestEveryTruncation(t *testing.T) {
	full := stream(t)
	boundaries := map[int]bool{0: true}
	for off := 0; off < len(full); {
		off += HeaderSize + int(binary.BigEndian.Uint32(full[off+1:]))
		boundaries[off] = true
	}
	for cut := 0; cut < len(full); cut++ {
		r := NewReader(bufio.NewReader(bytes.NewReader(full[:cut])), 1<<20)
		read := 0
		var err error
		for {
			var typ byte
			var payload []byte
			typ, payload, err = r.Next()
			if err != nil {
				break
			}
			read += HeaderSize + len(payload)
			if typ == 0 {
				t.Fatalf("cut %d: frame of type 0", cut)
			}
		}
		if boundaries[cut] {
			if err != io.EOF {
				t.Fatalf("cut %d at a frame boundary: %v, want io.EOF", cut, err)
			}
		} else if err == io.EOF || errors.Is(err, ErrGoAway) {
			t.Fatalf("cut %d inside a frame: %v, want an error that says so", cut, err)
		}
		if read > cut {
			t.Fatalf("cut %d: read %d bytes of frames", cut, read)
		}
	}
}

func header(typ byte, n uint32) []byte {
	h := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], n)
	return h
}

func TestReaderRefusesWhatItMustNotRead(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"message above the limit", header(FrameMessage, 1025), ErrFrameTooLarge},
		{"goaway above its limit", header(FrameGoAway, MaxGoAway+1), ErrFrameTooLarge},
		{"unknown type", header(9, 0), ErrUnknownFrame},
		{"type zero", header(0, 0), ErrUnknownFrame},
		{"short ping", append(header(FramePing, 4), 1, 2, 3, 4), ErrUnknownFrame},
		{"long pong", append(header(FramePong, 9), make([]byte, 9)...), ErrUnknownFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bufio.NewReader(bytes.NewReader(tc.input)), 1024)
			if _, _, err := r.Next(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// A header that announces a large frame costs memory only as the bytes
// arrive.
func TestAnnouncedSizeIsNotAllocatedAhead(t *testing.T) {
	in := append(header(FrameMessage, 60<<20), make([]byte, 1000)...)
	r := NewReader(bufio.NewReader(bytes.NewReader(in)), 64<<20)
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if c := cap(r.buf); c > keepBuffer {
		t.Fatalf("buffer grew to %d bytes for a frame that brought 1000", c)
	}
}

func TestLargeMessageRoundTrip(t *testing.T) {
	big := &concordv1.BatchRequest{}
	for i := range 40 {
		big.Calls = append(big.Calls, &concordv1.BatchCall{Id: uint64(i), Request: &concordv1.BatchCall_Put{
			Put: &concordv1.PutRequest{Key: []byte("k"), Value: bytes.Repeat([]byte{byte(i)}, 100<<10)}}})
	}
	var buf bytes.Buffer
	if err := NewWriter(&buf).WriteMessage(big); err != nil {
		t.Fatal(err)
	}
	r := NewReader(bufio.NewReader(&buf), 8<<20)
	_, payload, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var got concordv1.BatchRequest
	if err := (vtcodec.Codec{}).Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, big) {
		t.Fatal("a 4 MB message changed on the way")
	}
}

func TestIsUpgrade(t *testing.T) {
	req := func(proto int, conn, upgrade string) *http.Request {
		r := &http.Request{ProtoMajor: proto, Header: http.Header{}}
		if conn != "" {
			r.Header.Set("Connection", conn)
		}
		if upgrade != "" {
			r.Header.Set("Upgrade", upgrade)
		}
		return r
	}
	for _, tc := range []struct {
		r    *http.Request
		want bool
	}{
		{req(1, "Upgrade", Protocol), true},
		{req(1, "keep-alive, upgrade", "Concord-Batch/1"), true},
		{req(2, "Upgrade", Protocol), false},
		{req(1, "", Protocol), false},
		{req(1, "Upgrade", "websocket"), false},
		{req(1, "Upgrade", "concord-batch/2"), false},
	} {
		if got := IsUpgrade(tc.r); got != tc.want {
			t.Errorf("IsUpgrade(proto %d, %v) = %v, want %v", tc.r.ProtoMajor, tc.r.Header, got, tc.want)
		}
	}
}

// FuzzReader holds the reader to its limits on any input: no panic, no
// payload above the limit, pings and pongs of their size only, and
// message payloads that decode or fail with an error.
func FuzzReader(f *testing.F) {
	f.Add(stream(&testing.T{}))
	f.Add(header(FrameMessage, 3))
	f.Add(append(header(FramePing, PingSize), make([]byte, PingSize)...))
	f.Add(append(header(FrameGoAway, 2), 0xff, 0xfe))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		r := NewReader(bufio.NewReader(bytes.NewReader(data)), limit)
		for range 64 {
			typ, payload, err := r.Next()
			if err != nil {
				return
			}
			switch typ {
			case FrameMessage:
				if len(payload) > limit {
					t.Fatalf("payload of %d bytes above the limit", len(payload))
				}
				var req concordv1.BatchRequest
				_ = (vtcodec.Codec{}).Unmarshal(payload, &req)
			case FramePing, FramePong:
				if len(payload) != PingSize {
					t.Fatalf("ping of %d bytes", len(payload))
				}
			default:
				t.Fatalf("frame of type %d returned", typ)
			}
		}
	})
}
