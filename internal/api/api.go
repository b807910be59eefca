package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/server"
)

// ErrUnauthenticated is returned for a request without the configured
// bearer token.
var ErrUnauthenticated = errs.New("UNAUTHENTICATED", "api: missing or wrong bearer token")

// Options configure the handler.
type Options struct {
	// Gatherer serves /metrics; Registerer receives the API's metrics.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	// AuthToken, when set, is required as "Authorization: Bearer <token>"
	// on every RPC, /metrics, gRPC server reflection and the debug
	// endpoints; /healthz, /readyz and the gRPC health service are open.
	AuthToken string
	// MaxRequestBytes bounds a request message.
	MaxRequestBytes int
	// DisableFramedBatch refuses the framed batch protocol (api/batchwire)
	// as a member of an older release would; clients then use the
	// Connect stream. For tests.
	DisableFramedBatch bool
}

// Handler is a member's client API.
type Handler struct {
	http.Handler
	kv *kvService
}

// WaitFramed waits until the connections switched to the framed batch
// protocol have closed, or ctx ends, and then closes those left. When the
// base context of the http.Server ends, they stop reading, answer the
// calls in flight and close; http.Server.Shutdown does not wait for them.
func (h *Handler) WaitFramed(ctx context.Context) error { return h.kv.framed.wait(ctx) }

// CloseFramed closes the framed batch connections at once, answering none
// of their calls (Daemon.Kill: a crash, for in-process tests).
func (h *Handler) CloseFramed() { h.kv.framed.closeAll() }

// New returns the client API handler of srv.
func New(srv *server.Server, opts Options) *Handler {
	m := newMetrics(opts.Registerer)
	// Every handler gets the interceptors, the binary protobuf codec of
	// vtprotobuf's generated code, with proto's checks on input
	// (api/vtcodec), and a JSON codec that refuses unknown fields
	// (strictJSON).
	// Both refuse a message of more nested messages than a client sends
	// before decoding it (messageLimits).
	maxMessages, maxBatch := messageLimits(srv.Config().Limits.MaxTxnOps)
	bound := decodeBound{maxMessages: maxMessages, maxBytes: opts.MaxRequestBytes}
	interceptors := connect.WithHandlerOptions(
		connect.WithInterceptors(m.interceptor(), authInterceptor(opts.AuthToken), bound),
		connect.WithCodec(vtcodec.Codec{MaxMessages: maxMessages}), strictJSONOption(maxMessages, false))
	readMax := connect.WithReadMaxBytes(opts.MaxRequestBytes)
	// Compressing small messages costs far more CPU than it saves on the
	// networks concord runs on; only large responses (ranges, snapshots)
	// are compressed, and only for clients that ask.
	compress := connect.WithCompressMinBytes(64 << 10)
	mux := http.NewServeMux()
	// RPCs are refused without the token before their body is read (the
	// interceptor judges a unary call only after decoding it): a client
	// without it learns nothing from how its input is judged, and cannot
	// have the member read or decompress a body.
	refused, undecoded := m.refusedToken(), m.refusedBeforeHandling()
	// A request Connect cannot serve at all (a Content-Type the call does
	// not take, a bidirectional stream over HTTP/1.1) gets a typed error
	// that says how to call it, not an empty 415 or 505; a unary request
	// over the decoding bound or --max-request-bytes gets
	// REQUEST_TOO_LARGE, not Connect's bare decoding or size error.
	methods := procedures(services()...)
	rpc := func(path string, h http.Handler) {
		mux.Handle(path, requireTokenRPC(opts.AuthToken, typedRefusals(methods, decodeRefusals(methods, bound, undecoded, h)), refused))
	}
	kv := &kvService{s: srv, m: m, maxCallBytes: opts.MaxRequestBytes, token: opts.AuthToken, framedOff: opts.DisableFramedBatch,
		batchCodec: batchCodec{vtcodec.Codec{MaxMessages: maxBatch}}}
	kvPath, kvHandler := concordv1connect.NewKVHandler(kv, interceptors, readMax, compress)
	// A batch message carries many calls: it may be larger than one
	// request, and each call is checked against the request limit instead.
	batch := connect.NewBidiStreamHandler(concordv1connect.KVBatchProcedure, kv.Batch,
		interceptors, connect.WithReadMaxBytes(maxBatchMessageBytes), compress, connect.WithCodec(kv.batchCodec), strictJSONOption(maxBatch, true))
	rpc(kvPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == concordv1connect.KVBatchProcedure {
			if !kv.framedOff && batchwire.IsUpgrade(r) {
				kv.serveFramed(w, r)
				return
			}
			batch.ServeHTTP(w, r)
			return
		}
		kvHandler.ServeHTTP(w, r)
	}))
	rpc(concordv1connect.NewSessionHandler(&sessionService{s: srv}, interceptors, readMax, compress))
	rpc(concordv1connect.NewClusterHandler(&clusterService{s: srv}, interceptors, readMax, compress))
	rpc(concordv1connect.NewLockHandler(&lockService{s: srv}, interceptors, readMax, compress))
	rpc(concordv1connect.NewIDsHandler(&idsService{s: srv}, interceptors, readMax, compress))
	handleHealthAndReflection(mux, srv, opts.AuthToken, refused)

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if srv.Stopping() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !srv.Ready() {
			http.Error(w, "not ready: no leader known, leader not established, or shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", requireToken(opts.AuthToken, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	debug := http.NewServeMux()
	debug.HandleFunc("GET /debug/hash", func(w http.ResponseWriter, r *http.Request) {
		idx, h, err := srv.Hash(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"member": srv.Name(), "applied_index": idx, "hash": h})
	})
	debug.HandleFunc("/debug/pprof/", pprof.Index)
	debug.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	debug.HandleFunc("/debug/pprof/profile", pprof.Profile)
	debug.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	debug.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/", requireToken(opts.AuthToken, debug))
	return &Handler{Handler: mux, kv: kv}
}

const (
	// minRequestMessages and minBatchMessages bound the nested messages
	// (and elements of repeated fields) of a request message and of a
	// KV.Batch message: an empty one takes 2 bytes on the wire and some
	// 100 decoded, so that a request of 3 MiB of empty compares took
	// hundreds of MB before --max-txn-ops judged it. The bounds are
	// checked on the wire, before decoding.
	minRequestMessages = 1 << 16
	minBatchMessages   = 1 << 20
)

// messageLimits returns the nested messages a request message and a batch
// message may hold: at least minRequestMessages and minBatchMessages, and
// room for a transaction of maxTxnOps compares and operations in each
// branch (some 5 messages an operation), 512 of them in a batch message
// (the SDK's largest).
func messageLimits(maxTxnOps int) (request, batch int) {
	txn := 8 * maxTxnOps
	return max(minRequestMessages, txn), max(minBatchMessages, 512*txn)
}

func tokenOK(want, header string) bool {
	if want == "" {
		return true
	}
	// The scheme is case-insensitive, and one or more spaces may follow
	// it (RFC 9110, sections 11.1 and 11.4).
	scheme, got, ok := strings.Cut(header, " ")
	got = strings.TrimLeft(got, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func requireToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tokenOK(token, r.Header.Get("Authorization")) {
			http.Error(w, ErrUnauthenticated.Error(), http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// requireTokenRPC refuses a request without the token as an RPC of its
// protocol (Connect, gRPC or gRPC-Web) would be, with UNAUTHENTICATED, and
// tells refused its path.
func requireTokenRPC(token string, h http.Handler, refused func(path string)) http.Handler {
	if token == "" {
		return h
	}
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tokenOK(token, r.Header.Get("Authorization")) {
			refused(r.URL.Path)
			_ = ew.Write(w, r, errs.ToConnect(ErrUnauthenticated))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// refusedToken returns what counts an RPC refused for its token, as the
// interceptor counted it when it judged the token: under its method, with
// code unauthenticated. A path that names no method of the API is not
// counted: its label would be the caller's to choose.
func (m *metrics) refusedToken() func(path string) {
	refused := m.refusedBeforeHandling()
	return func(path string) { refused(path, errs.ToConnect(ErrUnauthenticated)) }
}

// refusedBeforeHandling returns what counts an RPC refused before the
// interceptors ran (for its token, or before its request was decoded:
// over --max-request-bytes or the decoding bound), under its method and
// err's code. A path that names no method of the API is not counted: its
// label would be the caller's to choose.
func (m *metrics) refusedBeforeHandling() func(path string, err error) {
	known := procedures(services()...)
	return func(path string, err error) {
		if _, ok := known[path]; ok {
			m.requests.WithLabelValues(method(path), codeOf(err)).Inc()
		}
	}
}

// services are the services of the client API.
func services() []protoreflect.ServiceDescriptor {
	return []protoreflect.ServiceDescriptor{
		concordv1.File_concord_v1_kv_proto.Services().ByName("KV"),
		concordv1.File_concord_v1_session_proto.Services().ByName("Session"),
		concordv1.File_concord_v1_cluster_proto.Services().ByName("Cluster"),
		concordv1.File_concord_v1_lock_proto.Services().ByName("Lock"),
		concordv1.File_concord_v1_id_proto.Services().ByName("IDs"),
	}
}

type authInterceptorT struct{ token string }

func authInterceptor(token string) connect.Interceptor { return authInterceptorT{token: token} }

func (a authInterceptorT) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !tokenOK(a.token, req.Header().Get("Authorization")) {
			return nil, errs.ToConnect(ErrUnauthenticated)
		}
		return next(ctx, req)
	}
}

func (a authInterceptorT) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a authInterceptorT) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if !tokenOK(a.token, conn.RequestHeader().Get("Authorization")) {
			return errs.ToConnect(ErrUnauthenticated)
		}
		return next(ctx, conn)
	}
}

// metrics are the API's Prometheus metrics, concord_api_*.
type metrics struct {
	requests     *prometheus.CounterVec
	seconds      *prometheus.HistogramVec
	streams      *prometheus.GaugeVec
	batchCalls   prometheus.Histogram
	batchResults prometheus.Histogram
	// byMethod caches the children of seconds and of requests (code ok)
	// for the methods batch calls run; a vector's lookup hashes its labels.
	byMethod map[string]methodMetrics
}

type methodMetrics struct {
	seconds prometheus.Observer
	ok      prometheus.Counter
}

// batchMethods are the methods a KV.Batch call may run.
var batchMethods = []string{"Range", "Put", "DeleteRange", "Txn", "Add", "Acquire", "AcquireWait", "Release", "NextIDs", "Batch"}

// observe records a call of method that started at start and ended with err.
func (m *metrics) observe(method string, start time.Time, err error) {
	mm, cached := m.byMethod[method]
	if !cached {
		mm.seconds = m.seconds.WithLabelValues(method)
	}
	mm.seconds.Observe(time.Since(start).Seconds())
	if err == nil && cached {
		mm.ok.Inc()
		return
	}
	m.requests.WithLabelValues(method, codeOf(wire(err))).Inc()
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_api_requests_total", Help: "Client API requests by method and result code."}, []string{"method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "concord_api_request_duration_seconds", Help: "Client API unary request latency by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"method"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "concord_api_open_streams", Help: "Open streams by method."}, []string{"method"}),
		batchCalls: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_api_batch_calls", Help: "Calls per message received on KV.Batch streams.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		batchResults: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_api_batch_results", Help: "Results per message sent on KV.Batch streams.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
	}
	reg.MustRegister(m.requests, m.seconds, m.streams, m.batchCalls, m.batchResults)
	m.byMethod = make(map[string]methodMetrics, len(batchMethods))
	for _, name := range batchMethods {
		m.byMethod[name] = methodMetrics{seconds: m.seconds.WithLabelValues(name), ok: m.requests.WithLabelValues(name, codeOf(nil))}
	}
	return m
}

func method(procedure string) string {
	if i := strings.LastIndex(procedure, "."); i >= 0 {
		return procedure[i+1:]
	}
	return procedure
}

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

type metricsInterceptor struct{ m *metrics }

func (m *metrics) interceptor() connect.Interceptor { return metricsInterceptor{m: m} }

func (mi metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		name := method(req.Spec().Procedure)
		mi.m.seconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
		mi.m.requests.WithLabelValues(name, codeOf(err)).Inc()
		return resp, err
	}
}

func (mi metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (mi metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		name := method(conn.Spec().Procedure)
		g := mi.m.streams.WithLabelValues(name)
		g.Inc()
		defer g.Dec()
		err := next(ctx, conn)
		mi.m.requests.WithLabelValues(name, codeOf(err)).Inc()
		return err
	}
}

// wire converts a server error for the wire.
func wire(err error) error {
	if err == nil {
		return nil
	}
	return errs.ToConnect(err)
}

// isEOF reports a cleanly closed client stream.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }
