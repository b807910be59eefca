package client

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/vtcodec"
)

// wrongAnswerMember speaks the framed protocol and answers every call with
// the given result (its ID set to the call's).
func wrongAnswerMember(t *testing.T, answer func() *concordv1.BatchResult) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if _, err := conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + batchwire.Protocol + "\r\n\r\n")); err != nil {
			return
		}
		r, w := batchwire.NewReader(br, 1<<20), batchwire.NewWriter(conn)
		for {
			typ, payload, err := r.Next()
			if err != nil {
				return
			}
			if typ != batchwire.FrameMessage {
				continue
			}
			var req concordv1.BatchRequest
			if err := (vtcodec.Codec{}).Unmarshal(payload, &req); err != nil {
				return
			}
			resp := &concordv1.BatchResponse{}
			for _, c := range req.GetCalls() {
				res := answer()
				res.Id = c.GetId()
				resp.Results = append(resp.Results, res)
			}
			if err := w.WriteMessage(resp); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

// A member's answer of another kind than the call (a Range result to a
// Put, or a result with nothing in it) is not a success: the SDK returned
// a PutResult of revision 0, or NextIDs no IDs and no error.
func TestBatchResultOfAnotherKindIsRefused(t *testing.T) {
	for name, answer := range map[string]func() *concordv1.BatchResult{
		"range": func() *concordv1.BatchResult {
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_Range{Range: &concordv1.RangeResponse{}}}
		},
		"empty": func() *concordv1.BatchResult { return &concordv1.BatchResult{} },
	} {
		t.Run(name, func(t *testing.T) {
			c := &Client{cfg: Config{DialTimeout: 5 * time.Second}, ctx: context.Background(), log: slog.New(slog.DiscardHandler)}
			b := newBatcher(c, &endpoint{addr: wrongAnswerMember(t, answer)})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := b.do(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("k")}}})
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatalf("a Put answered with %v came back as %v, %v", r, r, err)
			}
			if !errors.Is(fromWire(err), ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", fromWire(err))
			}
		})
	}
}
