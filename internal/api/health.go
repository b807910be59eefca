package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/concord-dev/concord/internal/server"
)

// healthPollInterval is how often a health Watch stream looks at the
// member's readiness: the server has no event for it, and a change is
// sent within this much.
var healthPollInterval = time.Second

// statusServiceUnknown is grpc.health.v1's SERVICE_UNKNOWN, which
// grpchealth.Status does not name: its handler sends a Status as the
// enum's number.
const statusServiceUnknown grpchealth.Status = 3

// watching marks the context of a health Watch stream (streamEnd sets
// it): Check answers an unknown service there with SERVICE_UNKNOWN rather
// than NOT_FOUND.
type watching struct{}

// healthChecker answers the gRPC health protocol (grpc.health.v1.Health)
// with the member's readiness, what GET /readyz answers: SERVING when the
// member knows a leader (and, if it leads, has committed an entry of its
// term), NOT_SERVING otherwise and once shutdown began. It answers so for
// the empty service name (the whole member) and for each service of the
// client API. Check of another name is NOT_FOUND; Watch of one sends
// SERVICE_UNKNOWN and stays open, as the protocol
// (grpc/doc/health-checking.md) says: the client may watch a service
// before its server serves it. A member's services are fixed, so nothing
// follows until the stream ends.
type healthChecker struct {
	s     *server.Server
	names map[string]bool
}

func newHealthChecker(s *server.Server) *healthChecker {
	names := map[string]bool{"": true}
	for _, sd := range services() {
		names[string(sd.FullName())] = true
	}
	return &healthChecker{s: s, names: names}
}

func (h *healthChecker) known(service string) error {
	if !h.names[service] {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q: ask for \"\" (the member) or a concord.v1 service", service))
	}
	return nil
}

// Check implements grpchealth.Checker. The handler calls it for a Watch
// stream's statuses too, with the stream's context.
func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if err := h.known(req.Service); err != nil {
		if ctx.Value(watching{}) != nil {
			return &grpchealth.CheckResponse{Status: statusServiceUnknown}, nil
		}
		return nil, err
	}
	if h.s.Ready() {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
}

// Watch implements grpchealth.Watcher: it polls the member's readiness
// every healthPollInterval; the handler sends a status only when it
// changed. An unknown service is not polled: the handler sends its
// SERVICE_UNKNOWN, and the stream stays open until the client or the
// member ends it.
func (h *healthChecker) Watch(_ context.Context, req *grpchealth.CheckRequest, onChange func()) (func(), error) {
	if !h.names[req.Service] {
		return func() {}, nil
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(healthPollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				onChange()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }, nil
}

// reflectedServices are the services gRPC server reflection lists: the
// client API, the health service and reflection itself, as grpc-go's
// reflection lists them.
func reflectedServices() []string {
	var names []string
	for _, sd := range services() {
		names = append(names, string(sd.FullName()))
	}
	return append(names, grpchealth.HealthV1ServiceName, grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName)
}

// handleHealthAndReflection serves the gRPC health protocol, open like
// /healthz and /readyz so that probes need no token, and gRPC server
// reflection (v1 and v1alpha), which needs the token as the API does: it
// describes the whole API.
func handleHealthAndReflection(mux *http.ServeMux, srv *server.Server, token string, refused func(string)) {
	mux.Handle(grpchealth.NewHandler(newHealthChecker(srv), connect.WithInterceptors(streamEnd{srv})))
	reflector := grpcreflect.NewStaticReflector(reflectedServices()...)
	for _, newHandler := range []func(*grpcreflect.Reflector, ...connect.HandlerOption) (string, http.Handler){
		grpcreflect.NewHandlerV1, grpcreflect.NewHandlerV1Alpha,
	} {
		path, h := newHandler(reflector)
		mux.Handle(path, requireTokenRPC(token, h, refused))
	}
}

// streamEnd marks a health Watch stream's context (watching), and ends a
// stream that its context ended as the client API's streams end: with
// SHUTTING_DOWN (Unavailable) when the member stops, so that a client
// takes it for a member going away rather than for a watch that had
// nothing more to send.
type streamEnd struct{ s *server.Server }

func (e streamEnd) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (e streamEnd) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (e streamEnd) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx = context.WithValue(ctx, watching{}, true)
		err := next(ctx, conn)
		if err == nil && ctx.Err() != nil {
			return wire(e.s.StreamEnd(ctx))
		}
		return err
	}
}
