package interop_test

import (
	"context"
	"errors"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// concordServices are the services of the client API.
var concordServices = []string{"concord.v1.Cluster", "concord.v1.IDs", "concord.v1.KV", "concord.v1.Lock", "concord.v1.Session"}

// sendErr is the error of a stream whose Send failed with err. grpc-go's
// Send returns io.EOF once the server has ended the stream (here, a member
// that refused the call before the client's first message went out: the
// token check answers at once), and the stream's status then comes from
// RecvMsg. Returning the EOF made TestGRPCHealthAndReflection flaky under
// load.
func sendErr[T any](st interface{ Recv() (T, error) }, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if _, err := st.Recv(); err != nil {
		return err
	}
	return status.Error(codes.Internal, "the stream ended its send side and then answered")
}

// listV1 lists the services of conn by gRPC server reflection v1.
func listV1(ctx context.Context, conn *grpc.ClientConn) ([]string, error) {
	st, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		return nil, sendErr(st, err)
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	// The descriptor of a service resolves too, as grpcurl asks for it.
	if err := st.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "concord.v1.KV"}}); err != nil {
		return nil, sendErr(st, err)
	}
	resp, err = st.Recv()
	if err != nil {
		return nil, err
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		return nil, status.Errorf(codes.Internal, "no descriptor for concord.v1.KV: %v", resp)
	}
	_ = st.CloseSend()
	return names, nil
}

func listV1Alpha(ctx context.Context, conn *grpc.ClientConn) ([]string, error) {
	st, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
		return nil, sendErr(st, err)
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	_ = st.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// A plain grpc-go client checks a member's health with the gRPC health
// protocol (as Kubernetes gRPC probes do) without the token, and lists
// the API by gRPC server reflection (as grpcurl and buf curl do without
// proto files) with it. Health answers what /readyz answers: SERVING with
// a leader, NOT_SERVING once two of three members are gone, for the
// member ("") and each service; Watch sends the change.
func TestGRPCHealthAndReflection(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 3, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	ctx := ctxT(t, 60*time.Second)
	leader := c.Leader()
	survivor := (leader + 1) % 3
	conn := dial(t, c.Endpoints()[survivor])
	health := healthpb.NewHealthClient(conn)

	for _, service := range append([]string{""}, concordServices...) {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		require.NoError(t, err, "health of %q without a token", service)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "service %q", service)
	}
	_, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	require.Equal(t, codes.NotFound, status.Code(err), "unknown service: %v", err)

	// Reflection describes the API: it needs the token, as the API does.
	_, err = listV1(ctx, conn)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "reflection without the token: %v", err)
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret")
	want := append(append([]string{}, concordServices...), "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
	sort.Strings(want)
	for name, list := range map[string]func(context.Context, *grpc.ClientConn) ([]string, error){"v1": listV1, "v1alpha": listV1Alpha} {
		got, err := list(authed, conn)
		require.NoError(t, err, "reflection %s", name)
		sort.Strings(got)
		require.Equal(t, want, got, "reflection %s", name)
	}

	// A watch sends SERVING, then NOT_SERVING once the quorum is lost.
	watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())
	for i := range c.Members {
		if i != survivor {
			c.Kill(i)
		}
	}
	require.Eventually(t, func() bool {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	}, 30*time.Second, 50*time.Millisecond, "health is not NOT_SERVING without a quorum")
	for _, service := range concordServices {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus(), "service %q", service)
	}
	next, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.GetStatus(), "the watch's next status")
}

// A health Watch open when its member stops gracefully ends with
// Unavailable (SHUTTING_DOWN), as the API's streams do, and does not hold
// up the stop.
func TestGRPCHealthWatchEndsAtShutdown(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	conn := dial(t, c.Endpoints()[0])
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "concord.v1.Lock"})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())
	c.Stop(0) // fails if the stop ran out its time
	for {
		resp, err := watch.Recv()
		if err != nil {
			code, reason := reasonOf(t, err)
			require.Equal(t, codes.Unavailable, code, "%v", err)
			require.Equal(t, "SHUTTING_DOWN", reason)
			break
		}
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus())
	}
}

// A health Watch of a service the member does not serve ended at once
// with NOT_FOUND (connectrpc.com/grpchealth's answer). The gRPC health
// protocol (grpc/doc/health-checking.md) says otherwise: the watch sends
// SERVICE_UNKNOWN and stays open, to send a status should the service
// become known, so that a client may watch a service before it is served.
// Check of an unknown service stays NOT_FOUND, as the protocol says; and
// the watch, like every stream, ends with SHUTTING_DOWN when the member
// stops.
func TestGRPCHealthWatchOfAnUnknownServiceStaysOpen(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	health := healthpb.NewHealthClient(dial(t, c.Endpoints()[0]))
	watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err, "the watch of an unknown service ended")
	require.Equal(t, healthpb.HealthCheckResponse_SERVICE_UNKNOWN, first.GetStatus())

	_, err = health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	require.Equal(t, codes.NotFound, status.Code(err), "Check of an unknown service: %v", err)
	resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

	// The watch is still open: what ends it is the member's stop, and it
	// sent nothing more before.
	c.Stop(0)
	_, err = watch.Recv()
	code, reason := reasonOf(t, err)
	require.Equal(t, codes.Unavailable, code, "%v", err)
	require.Equal(t, "SHUTTING_DOWN", reason)
}
