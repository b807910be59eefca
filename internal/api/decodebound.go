package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/server"
)

// tooManyMessages is the error of a request message refused by the
// decoding bound (vtcodec.ErrTooManyMessages: more nested messages and
// elements of repeated fields than maxMessages, counted before decoding),
// typed as the other refusals of a request's size are.
func tooManyMessages(maxMessages int) error {
	return errs.ToConnect(errs.Wrapf(server.ErrRequestTooLarge,
		"a request message of more than %d nested messages and elements of repeated fields, the bound checked before decoding "+
			"(65,536, or 8 × --max-txn-ops if more)", maxMessages))
}

// decodeBound types the decoding bound's refusal of a streaming call's
// message: Connect hands the codec's error to the handler, and so to the
// interceptor, as "unmarshal message: ...". (A KV.Batch message has its
// own bound and error, which Batch gives.)
type decodeBound struct{ maxMessages int }

func (d decodeBound) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (d decodeBound) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (d decodeBound) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		if errors.Is(err, vtcodec.ErrTooManyMessages) {
			return tooManyMessages(d.maxMessages)
		}
		return err
	}
}

// decodeRefusals types the decoding bound's refusal of a unary call's
// request. Connect decodes a unary request before any interceptor runs,
// and answers the codec's error itself: invalid_argument, with the
// message "unmarshal message: ...: too many nested messages ..." and no
// ErrorInfo. Such an answer (that code, that message, no details: no
// handler answers so) is replaced with tooManyMessages(maxMessages) in the
// protocol the request speaks; any other answer passes as it is written.
func decodeRefusals(methods map[string]protoreflect.MethodDescriptor, maxMessages int, h http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	refusal := tooManyMessages(maxMessages)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md, known := methods[r.URL.Path]
		if !known || md.IsStreamingClient() || md.IsStreamingServer() {
			h.ServeHTTP(w, r)
			return
		}
		bw := &boundWriter{ResponseWriter: w, r: r, ew: ew, refusal: refusal}
		h.ServeHTTP(bw, r)
		bw.finish()
	})
}

// maxHeldError bounds the Connect error body boundWriter holds back: the
// refusal's is some 200 bytes.
const maxHeldError = 4 << 10

// boundWriter passes a unary call's answer through, but holds back what
// could be Connect's answer to a request the decoding bound refused, to
// replace it: a Connect error (a status of 400 and its JSON body), or a
// gRPC or gRPC-Web answer of no message whose status is in its headers
// or trailers.
type boundWriter struct {
	http.ResponseWriter
	r       *http.Request
	ew      *connect.ErrorWriter
	refusal error
	// passed is set once the answer is known not to be the refusal: what
	// follows goes through.
	passed bool
	// held is the status of a Connect error held back, and body its body.
	held int
	body []byte
}

func (bw *boundWriter) WriteHeader(code int) {
	switch {
	case bw.passed:
		bw.ResponseWriter.WriteHeader(code)
	case code == http.StatusBadRequest && bw.held == 0:
		bw.held = code
	default:
		bw.pass()
		bw.ResponseWriter.WriteHeader(code)
	}
}

func (bw *boundWriter) Write(b []byte) (int, error) {
	if bw.held != 0 && !bw.passed && len(bw.body)+len(b) <= maxHeldError {
		bw.body = append(bw.body, b...)
		return len(b), nil
	}
	bw.pass()
	return bw.ResponseWriter.Write(b)
}

// Flush is where Connect ends a gRPC answer: a refusal is judged then,
// from the status in the headers (gRPC-Web) or the trailers (gRPC).
func (bw *boundWriter) Flush() {
	if !bw.passed && bw.held == 0 {
		if bw.refusedGRPC() {
			return
		}
		bw.pass()
	}
	if bw.passed {
		_ = http.NewResponseController(bw.ResponseWriter).Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (bw *boundWriter) Unwrap() http.ResponseWriter { return bw.ResponseWriter }

// pass writes what was held back and lets the rest through.
func (bw *boundWriter) pass() {
	if bw.passed {
		return
	}
	bw.passed = true
	if bw.held != 0 {
		bw.ResponseWriter.WriteHeader(bw.held)
		if len(bw.body) > 0 {
			_, _ = bw.ResponseWriter.Write(bw.body)
		}
		bw.body = nil
	}
}

// finish ends the answer once the handler returned.
func (bw *boundWriter) finish() {
	if bw.passed {
		return
	}
	if bw.held != 0 {
		var wire struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Details []json.RawMessage `json:"details"`
		}
		if json.Unmarshal(bw.body, &wire) == nil && wire.Code == connect.CodeInvalidArgument.String() &&
			len(wire.Details) == 0 && refusedMessage(wire.Message) {
			bw.replace()
			return
		}
		bw.pass()
		return
	}
	if !bw.refusedGRPC() {
		bw.pass()
	}
}

// refusedGRPC replaces a gRPC or gRPC-Web answer that is the refusal, and
// reports whether it did.
func (bw *boundWriter) refusedGRPC() bool {
	hdr := bw.ResponseWriter.Header()
	for _, prefix := range []string{http.TrailerPrefix, ""} {
		if hdr.Get(prefix+"Grpc-Status") != "3" || hdr.Get(prefix+"Grpc-Status-Details-Bin") != "" {
			continue
		}
		if !refusedMessage(hdr.Get(prefix + "Grpc-Message")) {
			return false
		}
		for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
			hdr.Del(prefix + k)
		}
		bw.replace()
		return true
	}
	return false
}

// refusedMessage reports whether msg (percent-encoded as gRPC sends it,
// which leaves these words as they are) is Connect's message for a
// request the codec refused for its nested messages.
func refusedMessage(msg string) bool {
	return strings.HasPrefix(msg, "unmarshal message: ") && strings.Contains(msg, vtcodec.ErrTooManyMessages.Error())
}

// replace answers the refusal instead, in the request's protocol.
func (bw *boundWriter) replace() {
	bw.passed = true
	bw.body = nil
	_ = bw.ew.Write(bw.ResponseWriter, bw.r, bw.refusal)
}
