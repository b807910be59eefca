package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-dev/concord/api/batchwire"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/server"
)

// procedures returns the method descriptors of the API by procedure path
// ("/concord.v1.Lock/Acquire").
func procedures(services ...protoreflect.ServiceDescriptor) map[string]protoreflect.MethodDescriptor {
	out := map[string]protoreflect.MethodDescriptor{}
	for _, sd := range services {
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			out["/"+string(sd.FullName())+"/"+string(md.Name())] = md
		}
	}
	return out
}

// typedRefusals makes the answers Connect gives a request it cannot serve
// at all typed errors that say how to call the procedure. Connect answers
// a Content-Type the procedure does not take (a streaming call posted as
// application/json, the way curl sends the unary ones; a unary call
// posted without a JSON Content-Type, as curl -d does) with an empty 415,
// and a bidirectional stream over HTTP/1.1 with an empty 505. Those keep
// their status (and Connect's Accept-Post and Connection headers) and get
// an INVALID_ARGUMENT error in the protocol the request speaks: a Connect
// JSON error body, or the end of a Connect stream. gRPC requests, which
// Connect always serves, and the framed batch upgrade pass untouched.
func typedRefusals(methods map[string]protoreflect.MethodDescriptor, h http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md, known := methods[r.URL.Path]
		if !known || served(r, md) || batchwire.IsUpgrade(r) ||
			strings.HasPrefix(strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type"))), "application/grpc") {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&refusalWriter{ResponseWriter: w, r: r, md: md, ew: ew}, r)
	})
}

// served reports whether Connect serves r as it comes, so that it answers
// it with neither 415 nor 505: a unary call posted as application/json or
// application/proto, a stream as application/connect+json or
// application/connect+proto (a bidirectional one over HTTP/2), spelled as
// clients send them. Those, the calls of Connect clients, pass without the
// writer the wrapper would allocate for every call; anything else goes
// through it.
func served(r *http.Request, md protoreflect.MethodDescriptor) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct := r.Header.Get("Content-Type")
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return ct == "application/json" || ct == "application/proto"
	}
	if md.IsStreamingClient() && md.IsStreamingServer() && r.ProtoMajor < 2 {
		return false
	}
	return ct == "application/connect+json" || ct == "application/connect+proto"
}

// refusalWriter replaces Connect's empty 415 and 505 answers with typed
// errors.
type refusalWriter struct {
	http.ResponseWriter
	r        *http.Request
	md       protoreflect.MethodDescriptor
	ew       *connect.ErrorWriter
	started  bool
	replaced bool
}

func (rw *refusalWriter) WriteHeader(code int) {
	if rw.started {
		rw.ResponseWriter.WriteHeader(code)
		return
	}
	rw.started = true
	if code != http.StatusUnsupportedMediaType && code != http.StatusHTTPVersionNotSupported {
		rw.ResponseWriter.WriteHeader(code)
		return
	}
	rw.replaced = true
	err := errs.ToConnect(errs.Wrapf(server.ErrInvalidArgument, "%s", refusal(rw.r, rw.md, code)))
	ct := strings.ToLower(strings.TrimSpace(rw.r.Header.Get("Content-Type")))
	var out http.ResponseWriter = rw.ResponseWriter
	if !strings.HasPrefix(ct, "application/connect+") || rw.r.Method != http.MethodPost {
		// A unary Connect error body: keep Connect's status, which tells
		// what is wrong with the request in HTTP's terms.
		out = statusWriter{ResponseWriter: rw.ResponseWriter, code: code}
	}
	_ = rw.ew.Write(out, rw.r, err)
}

func (rw *refusalWriter) Write(b []byte) (int, error) {
	if rw.replaced {
		return len(b), nil
	}
	rw.started = true
	return rw.ResponseWriter.Write(b)
}

// Flush lets Connect stream through the writer.
func (rw *refusalWriter) Flush() {
	if rw.replaced {
		return
	}
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rw *refusalWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s statusWriter) WriteHeader(int) { s.ResponseWriter.WriteHeader(s.code) }

// refusal says why a request for md was refused with code, and how to call
// it.
func refusal(r *http.Request, md protoreflect.MethodDescriptor, code int) string {
	name := string(md.Parent().FullName()) + "/" + string(md.Name())
	var b strings.Builder
	switch {
	case r.Method == http.MethodGet && !slices.Contains([]string{"json", "json; charset=utf-8", "proto"}, r.URL.Query().Get("encoding")):
		// Connect refuses a GET for its encoding, or for a body.
		fmt.Fprintf(&b, "a GET of %s takes encoding=json (or encoding=proto) in its URL, not %q", name, r.URL.Query().Get("encoding"))
	case r.Method == http.MethodGet:
		fmt.Fprintf(&b, "a GET of %s carries its request in the URL (?encoding=json&message=...), not in a body", name)
	case code == http.StatusHTTPVersionNotSupported:
		fmt.Fprintf(&b, "%s is a bidirectional stream: it needs HTTP/2 (a gRPC client, or Connect over HTTP/2)", name)
	case md.IsStreamingServer() || md.IsStreamingClient():
		fmt.Fprintf(&b, "%s is a stream, and Content-Type %q is not one it takes: POST it as application/connect+json "+
			"(or application/connect+proto) with the request in an envelope (a flags byte 0, the message's length in 4 bytes, "+
			"big-endian, then the message), or call it with a gRPC client", name, r.Header.Get("Content-Type"))
	default:
		fmt.Fprintf(&b, "%s takes Content-Type application/json (or application/proto), not %q; or call it with a gRPC client",
			name, r.Header.Get("Content-Type"))
	}
	if md.FullName() == "concord.v1.Session.KeepAlive" {
		b.WriteString("; without streams, keep a session alive with Session/KeepAliveOnce, its unary form")
	}
	return b.String()
}
