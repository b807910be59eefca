package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
)

// BenchmarkRefusalsUnary measures what typedRefusals adds to a unary
// Connect call (a JSON Cluster/Status against a handler that answers at
// once): run with -benchmem and compare "direct" with "wrapped".
func BenchmarkRefusalsUnary(b *testing.B) {
	h := connect.NewUnaryHandler(concordv1connect.ClusterStatusProcedure,
		func(context.Context, *connect.Request[concordv1.StatusRequest]) (*connect.Response[concordv1.StatusResponse], error) {
			return connect.NewResponse(&concordv1.StatusResponse{}), nil
		})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"direct", h}, {"wrapped", typedRefusals(procedures(services()...), h)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, concordv1connect.ClusterStatusProcedure, strings.NewReader("{}"))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// nopWriter is a ResponseWriter that allocates nothing.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}

// The refusal wrapper costs no allocation on a call Connect serves: a
// unary call posted as application/json or application/proto, or a stream
// posted as application/connect+json or +proto (a bidirectional one over
// HTTP/2). It allocated its writer for every such call.
func TestRefusalsAllocateNothingOnCallsConnectServes(t *testing.T) {
	h := typedRefusals(procedures(services()...), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, c := range []struct {
		path, contentType string
		protoMajor        int
	}{
		{concordv1connect.KVRangeProcedure, "application/json", 1},
		{concordv1connect.KVPutProcedure, "application/proto", 2},
		{concordv1connect.LockAcquireProcedure, "application/connect+json", 1},
		{concordv1connect.SessionKeepAliveProcedure, "application/connect+proto", 2},
	} {
		r := httptest.NewRequest(http.MethodPost, c.path, nil)
		r.Header.Set("Content-Type", c.contentType)
		r.ProtoMajor = c.protoMajor
		w := nopWriter{h: http.Header{}}
		allocs := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) })
		if allocs != 0 {
			t.Errorf("%s posted as %s over HTTP/%d: %v allocations per call through the wrapper, want 0", c.path, c.contentType, c.protoMajor, allocs)
		}
	}
}
