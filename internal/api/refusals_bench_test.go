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
