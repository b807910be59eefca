// Package batchwire is the framed protocol that carries concord's KV.Batch
// stream between the SDK and a member without HTTP/2.
//
// KV.Batch is the SDK's hot path: every KV call, lock acquire and release
// and ID request of a client goes through one stream per member, as
// messages that each carry many calls. Over HTTP/2 (Go's net/http, which
// Connect uses) a message crosses three goroutines on each side and an
// io.Pipe before it reaches the socket; for small messages that is most of
// the cost of a call. The framed protocol keeps the messages (BatchRequest,
// BatchResponse, encoded as protobuf) and drops the rest: one frame per
// message, written with one write by the goroutine that sends it and read
// by the goroutine that handles it.
//
// A client switches a connection to the protocol with an HTTP/1.1 Upgrade
// on the member's client port, on the path of the Connect method:
//
//	GET /concord.v1.KV/Batch HTTP/1.1
//	Host: member:2379
//	Connection: Upgrade
//	Upgrade: concord-batch/1
//	Authorization: Bearer TOKEN        (when the cluster requires one)
//
// A member that speaks it answers "101 Switching Protocols" with the same
// Upgrade header, and from then on both sides exchange frames. A member that
// does not (an older release) answers with an HTTP error, and the SDK uses
// the Connect stream instead. A wrong token gets 401 and no upgrade. With
// TLS the client offers only http/1.1 in ALPN, so the Upgrade applies.
//
// A frame is a 5-byte header, the type (one byte) and the length of the
// payload (four bytes, big-endian), then the payload:
//
//	FrameMessage  a BatchRequest (client to member) or BatchResponse (member
//	              to client), protobuf, decoded with proto's checks
//	              (api/vtcodec)
//	FramePing     8 opaque bytes; the other side answers with a pong
//	FramePong     the 8 bytes of the ping it answers
//	FrameGoAway   a UTF-8 reason; the sender closes the connection after it
//
// Either side may ping; the SDK pings a member it has not heard from for
// two seconds and closes the connection when no frame arrives within two
// more, so calls fail over from a paused or partitioned member as they do
// over HTTP/2. A member closes a connection that sends nothing for
// IdleTimeout, or does not read its answers for as long. An unknown frame type, a frame above the reader's limit or a
// payload that does not decode ends the connection with a GoAway that says
// why; calls in flight on it have an unknown outcome, as with any broken
// stream. A member that shuts down gracefully stops reading, answers the
// calls in flight (as on its unary path), then sends a GoAway.
package batchwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/concord-dev/concord/api/vtcodec"
)

// Protocol is the token of the HTTP/1.1 Upgrade to the framed protocol.
const Protocol = "concord-batch/1"

// Frame types.
const (
	FrameMessage byte = 1
	FramePing    byte = 2
	FramePong    byte = 3
	FrameGoAway  byte = 4
)

const (
	// HeaderSize is the size of a frame's header.
	HeaderSize = 5
	// PingSize is the size of a ping's and a pong's payload.
	PingSize = 8
	// MaxGoAway bounds a GoAway's reason.
	MaxGoAway = 1 << 10
	// IdleTimeout is how long a member keeps a connection on which no frame
	// arrives. The SDK pings well within it.
	IdleTimeout = 30 * time.Second
)

// Errors of the protocol. Each is wrapped with the details.
var (
	// ErrFrameTooLarge is returned for a frame whose payload exceeds the
	// reader's limit.
	ErrFrameTooLarge = errors.New("batchwire: frame too large")
	// ErrUnknownFrame is returned for a frame of a type this version does
	// not know, or a ping or pong of the wrong size.
	ErrUnknownFrame = errors.New("batchwire: unknown or malformed frame")
	// ErrGoAway is returned when the other side ended the connection with a
	// GoAway; the error carries its reason.
	ErrGoAway = errors.New("batchwire: connection ended by the other side")
)

// IsUpgrade reports whether r asks to switch its connection to the
// protocol.
func IsUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), Protocol)
}

// headerHasToken reports whether a comma-separated header holds token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Reader reads frames. It is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	max int
	hdr [HeaderSize]byte
	buf []byte
}

// keepBuffer is the largest payload buffer a Reader keeps between frames.
const keepBuffer = 1 << 20

// NewReader reads frames from r, refusing payloads above max bytes.
func NewReader(r *bufio.Reader, max int) *Reader { return &Reader{r: r, max: max} }

// Next reads the next frame. The payload is valid until the next call. A
// GoAway is returned as an error wrapping ErrGoAway; io.EOF means the
// other side closed the connection between frames.
func (fr *Reader) Next() (typ byte, payload []byte, err error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("batchwire: connection closed inside a frame header: %w", err)
		}
		return 0, nil, err
	}
	typ = fr.hdr[0]
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	switch typ {
	case FrameMessage:
		if uint64(n) > uint64(fr.max) {
			return 0, nil, fmt.Errorf("%w: a message of %d bytes, the limit is %d", ErrFrameTooLarge, n, fr.max)
		}
	case FramePing, FramePong:
		if n != PingSize {
			return 0, nil, fmt.Errorf("%w: type %d with %d bytes, want %d", ErrUnknownFrame, typ, n, PingSize)
		}
	case FrameGoAway:
		if n > MaxGoAway {
			return 0, nil, fmt.Errorf("%w: a goaway of %d bytes, the limit is %d", ErrFrameTooLarge, n, MaxGoAway)
		}
	default:
		return 0, nil, fmt.Errorf("%w: type %d", ErrUnknownFrame, typ)
	}
	if cap(fr.buf) > keepBuffer && int(n) <= keepBuffer {
		fr.buf = nil
	}
	// The buffer grows with the bytes that arrive, a megabyte at a time,
	// so a header that announces a large frame and a peer that sends
	// nothing after it cost no memory.
	payload = fr.buf[:0]
	for len(payload) < int(n) {
		step := min(int(n)-len(payload), keepBuffer)
		if cap(payload)-len(payload) < step {
			payload = append(payload, make([]byte, step)...)[:len(payload)]
		}
		got, err := io.ReadFull(fr.r, payload[len(payload):len(payload)+step])
		payload = payload[:len(payload)+got]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, fmt.Errorf("batchwire: connection closed inside a frame of %d bytes: %w", n, err)
		}
	}
	fr.buf = payload
	if typ == FrameGoAway {
		return 0, nil, fmt.Errorf("%w: %q", ErrGoAway, strings.ToValidUTF8(string(payload), "?"))
	}
	return typ, payload, nil
}

// Writer writes frames, each with one Write. It is safe for concurrent
// use.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter writes frames to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteMessage encodes m (a message of concord's API) and writes it as one
// frame.
func (fw *Writer) WriteMessage(m any) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	buf, err := vtcodec.Codec{}.MarshalAppend(append(fw.buf[:0], make([]byte, HeaderSize)...), m)
	if err != nil {
		return err
	}
	n := len(buf) - HeaderSize
	if uint64(n) > 1<<32-1 {
		return fmt.Errorf("%w: a message of %d bytes", ErrFrameTooLarge, n)
	}
	buf[0] = FrameMessage
	binary.BigEndian.PutUint32(buf[1:], uint32(n))
	_, err = fw.w.Write(buf)
	if cap(buf) <= keepBuffer {
		fw.buf = buf[:0]
	} else {
		fw.buf = nil
	}
	return err
}

// WritePing writes a ping (or, with FramePong, its answer) carrying data.
func (fw *Writer) WritePing(typ byte, data [PingSize]byte) error {
	var f [HeaderSize + PingSize]byte
	f[0] = typ
	binary.BigEndian.PutUint32(f[1:], PingSize)
	copy(f[HeaderSize:], data[:])
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(f[:])
	return err
}

// WriteGoAway writes a GoAway with reason, cut to MaxGoAway bytes.
func (fw *Writer) WriteGoAway(reason string) error {
	if len(reason) > MaxGoAway {
		reason = reason[:MaxGoAway]
	}
	f := make([]byte, HeaderSize+len(reason))
	f[0] = FrameGoAway
	binary.BigEndian.PutUint32(f[1:], uint32(len(reason)))
	copy(f[HeaderSize:], reason)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(f)
	return err
}
