package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
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

// tooManyBytes is the error of a request message larger than limit bytes
// (--max-request-bytes, or a KV.Batch message's own bound when batch),
// which Connect refuses before decoding it (WithReadMaxBytes): size is the
// message's size, 0 when Connect did not learn it.
func tooManyBytes(size int64, limit int, batch bool) error {
	what, bound := "a request message", "--max-request-bytes"
	if batch {
		what, bound = "a KV.Batch message", "the bound of a KV.Batch message; each call in it is held to --max-request-bytes"
	}
	if size > 0 {
		return errs.ToConnect(errs.Wrapf(server.ErrRequestTooLarge, "%s of %d bytes; the limit is %d (%s)", what, size, limit, bound))
	}
	return errs.ToConnect(errs.Wrapf(server.ErrRequestTooLarge, "%s of more than %d bytes; the limit is %d (%s)", what, limit, limit, bound))
}

// oversized reports whether msg is Connect's message for a request
// message over its read limit (WithReadMaxBytes), and the size it names,
// if it names one. Connect answers such a message with resource_exhausted,
// no details and one of two messages: "message size N is larger than
// configured max M", or "message is larger than configured max M - unable
// to determine message size: ...".
func oversized(msg string) (size int64, ok bool) {
	if strings.HasPrefix(msg, "message is larger than configured max ") {
		return 0, true
	}
	var limit int64
	if _, err := fmt.Sscanf(msg, "message size %d is larger than configured max %d", &size, &limit); err != nil || size <= 0 {
		return 0, false
	}
	return size, true
}

// decodeBound types the refusals of a request before it is decoded, as
// REQUEST_TOO_LARGE: the decoding bound's (maxMessages), and Connect's of
// a message larger than --max-request-bytes (maxBytes), or than
// maxBatchMessageBytes for a KV.Batch message. For a streaming call,
// Connect hands either error to the handler, and so to the interceptor:
// the codec's as "unmarshal message: ...", its own as resource_exhausted.
// (A KV.Batch message over its decoding bound has its own error, which
// Batch gives.)
type decodeBound struct{ maxMessages, maxBytes int }

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
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted && len(ce.Details()) == 0 {
			if size, ok := oversized(ce.Message()); ok {
				if conn.Spec().Procedure == concordv1connect.KVBatchProcedure {
					return tooManyBytes(size, maxBatchMessageBytes, true)
				}
				return tooManyBytes(size, d.maxBytes, false)
			}
		}
		return err
	}
}

// refusal returns the typed error that replaces Connect's answer of code
// and msg (with no details) to a unary request it refused before decoding
// it, or nil if that answer is not such a refusal.
func (d decodeBound) refusal(code connect.Code, msg string) error {
	switch code {
	case connect.CodeInvalidArgument:
		if refusedMessage(msg) {
			return tooManyMessages(d.maxMessages)
		}
	case connect.CodeResourceExhausted:
		if size, ok := oversized(msg); ok {
			return tooManyBytes(size, d.maxBytes, false)
		}
	}
	return nil
}

// decodeRefusals types the refusals of a unary call's request before it
// is decoded. Connect reads and decodes a unary request before any
// interceptor runs, and answers itself: the codec's error as
// invalid_argument, with the message "unmarshal message: ...: too many
// nested messages ...", and a message over --max-request-bytes as
// resource_exhausted (429), "message size N is larger than configured max
// M"; neither with an ErrorInfo. Such an answer (that code, that message,
// no details: no handler answers so) is replaced with d.refusal's typed
// error in the protocol the request speaks; any other answer passes as it
// is written. refused counts a replaced answer: the metrics interceptor
// never saw the call.
func decodeRefusals(methods map[string]protoreflect.MethodDescriptor, d decodeBound, refused func(path string, err error), h http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md, known := methods[r.URL.Path]
		if !known || md.IsStreamingClient() || md.IsStreamingServer() {
			h.ServeHTTP(w, r)
			return
		}
		bw := &boundWriter{ResponseWriter: w, r: r, ew: ew, bound: d}
		h.ServeHTTP(bw, r)
		bw.finish()
		if bw.replaced != nil {
			refused(r.URL.Path, bw.replaced)
		}
	})
}

// maxHeldError bounds the Connect error body boundWriter holds back: the
// refusals' are some 200 bytes.
const maxHeldError = 4 << 10

// boundWriter passes a unary call's answer through, but holds back what
// could be Connect's answer to a request it refused before decoding it,
// to replace it: a Connect error (a status of 400 or 429 and its JSON
// body), or a gRPC or gRPC-Web answer of no message whose status is in
// its headers or trailers.
type boundWriter struct {
	http.ResponseWriter
	r     *http.Request
	ew    *connect.ErrorWriter
	bound decodeBound
	// replaced is the refusal that replaced Connect's answer, if one did.
	replaced error
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
	case (code == http.StatusBadRequest || code == http.StatusTooManyRequests) && bw.held == 0:
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
		var code connect.Code
		if json.Unmarshal(bw.body, &wire) == nil && len(wire.Details) == 0 && code.UnmarshalText([]byte(wire.Code)) == nil {
			if refusal := bw.bound.refusal(code, wire.Message); refusal != nil {
				bw.replace(refusal)
				return
			}
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
		status := hdr.Get(prefix + "Grpc-Status")
		if (status != "3" && status != "8") || hdr.Get(prefix+"Grpc-Status-Details-Bin") != "" {
			continue
		}
		code, _ := strconv.Atoi(status)
		refusal := bw.bound.refusal(connect.Code(code), hdr.Get(prefix+"Grpc-Message"))
		if refusal == nil {
			return false
		}
		for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
			hdr.Del(prefix + k)
		}
		bw.replace(refusal)
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

// replace answers refusal instead, in the request's protocol.
func (bw *boundWriter) replace(refusal error) {
	bw.passed, bw.replaced = true, refusal
	bw.body = nil
	_ = bw.ew.Write(bw.ResponseWriter, bw.r, refusal)
}
