// Package vtcodec is the Connect codec for binary protobuf that concord's
// server and SDK use in place of Connect's default. Messages generated with
// vtprotobuf's methods (every message of concord's API) are encoded and
// decoded by that generated code, without reflection; other messages go
// through proto as before.
//
// Decoding keeps proto.Unmarshal's checks: strings of proto3 messages must
// be valid UTF-8, and nesting is limited to 10,000 levels, so input refused
// by the default codec is refused here too, with an error. A Connect peer
// sees no difference on the wire.
//
// A codec with MaxMessages also bounds what a message decodes to: an empty
// nested message takes 2 bytes on the wire and some 100 decoded, so a
// request of a few MiB of them took hundreds of MB before anything judged
// it. Servers set it; the zero value, which clients use, bounds nothing.
package vtcodec

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Name is the codec's name, the one Connect's default binary codec has.
const Name = "proto"

// maxDepth is proto.Unmarshal's default nesting limit.
const maxDepth = 10000

// ErrInvalidUTF8 is returned when a proto3 string field is not UTF-8.
var ErrInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// ErrTooDeep is returned when messages nest deeper than proto allows.
var ErrTooDeep = errors.New("exceeded maximum recursion depth")

// ErrTooManyMessages is returned when a message holds more nested messages
// and elements of repeated fields than the codec's MaxMessages.
var ErrTooManyMessages = errors.New("too many nested messages")

// errMalformed is returned when the wire data does not parse.
var errMalformed = errors.New("malformed protobuf wire data")

// vtMessage is what vtprotobuf generates (features marshal, unmarshal,
// size).
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVT([]byte) error
}

// Codec implements connect.Codec. The zero value is ready to use.
type Codec struct {
	// MaxMessages, if above 0, bounds the nested messages of a message
	// Unmarshal decodes, and the elements of its repeated fields, counted
	// at every depth (the message itself is not): more are refused with
	// ErrTooManyMessages before anything is decoded.
	MaxMessages int
}

var _ connect.Codec = Codec{}

// Option returns the handler and client option that installs the codec.
func Option() connect.Option { return connect.WithCodec(Codec{}) }

// Name implements connect.Codec.
func (Codec) Name() string { return Name }

// IsBinary reports that the codec's output is binary.
func (Codec) IsBinary() bool { return true }

// Marshal implements connect.Codec.
func (c Codec) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

// MarshalAppend appends m's encoding to dst.
func (Codec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	vt, ok := m.(vtMessage)
	if !ok {
		pm, ok := m.(proto.Message)
		if !ok {
			return nil, fmt.Errorf("%T is not a protobuf message", m)
		}
		return proto.MarshalOptions{}.MarshalAppend(dst, pm)
	}
	n := vt.SizeVT()
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	if _, err := vt.MarshalToSizedBufferVT(dst[start:]); err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	return dst, nil
}

// MarshalStable encodes m deterministically, as Connect's default codec
// does (it is used for idempotent GET requests).
func (Codec) MarshalStable(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pm)
}

// Unmarshal implements connect.Codec: it replaces m's contents with data's.
func (c Codec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	vt, ok := m.(vtMessage)
	if !ok {
		if c.MaxMessages > 0 {
			if err := CheckLimit(data, pm.ProtoReflect().Descriptor(), c.MaxMessages); err != nil {
				return fmt.Errorf("unmarshal into %T: %w", m, err)
			}
		}
		if err := proto.Unmarshal(data, pm); err != nil {
			return fmt.Errorf("unmarshal into %T: %w", m, err)
		}
		return nil
	}
	if err := CheckLimit(data, pm.ProtoReflect().Descriptor(), c.MaxMessages); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	proto.Reset(pm)
	if err := vt.UnmarshalVT(data); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}

// Check walks the wire encoding of a message of type md and reports what
// proto.Unmarshal would refuse beyond the wire format itself: a proto3
// string that is not UTF-8, or nesting deeper than 10,000 messages. Fields
// the descriptor does not know are skipped, as the decoder keeps them as
// unknown fields.
func Check(data []byte, md protoreflect.MessageDescriptor) error {
	return CheckLimit(data, md, 0)
}

// CheckLimit is Check that also refuses, with ErrTooManyMessages, more than
// maxMessages nested messages and elements of repeated fields, counted at
// every depth; 0 bounds nothing.
func CheckLimit(data []byte, md protoreflect.MessageDescriptor, maxMessages int) error {
	left := -1
	if maxMessages > 0 {
		left = maxMessages
	}
	if err := check(data, md, 0, &left); err != nil {
		if errors.Is(err, ErrTooManyMessages) {
			return fmt.Errorf("%w: more than %d", ErrTooManyMessages, maxMessages)
		}
		return err
	}
	return nil
}

// spend takes n from left, or reports that fewer are left.
func spend(left *int, n int) error {
	if n > *left {
		return ErrTooManyMessages
	}
	*left -= n
	return nil
}

// elements returns how many elements v, the length-delimited value of fd,
// decodes to: each varint of a packed list of varints, each value of a
// packed list of fixed-size numbers, one message, string or bytes.
func elements(fd protoreflect.FieldDescriptor, v []byte) int {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind, protoreflect.StringKind, protoreflect.BytesKind:
		return 1
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return len(v) / 4
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return len(v) / 8
	}
	n := 0
	for _, c := range v {
		if c < 0x80 {
			n++
		}
	}
	return n
}

// check walks b; left counts down the messages and elements still allowed
// (below 0: no bound).
func check(b []byte, md protoreflect.MessageDescriptor, depth int, left *int) error {
	if depth > maxDepth {
		return ErrTooDeep
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return errMalformed
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errMalformed
			}
			b = b[n:]
			if *left >= 0 {
				if fd := fields.ByNumber(num); fd != nil && fd.IsList() {
					if err := spend(left, 1); err != nil {
						return err
					}
				}
			}
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd == nil {
			continue
		}
		if *left >= 0 && (fd.Kind() == protoreflect.MessageKind || fd.IsList()) {
			if err := spend(left, elements(fd, v)); err != nil {
				return err
			}
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if fd.ParentFile().Syntax() == protoreflect.Proto3 && !utf8.Valid(v) {
				return fmt.Errorf("%w: %s", ErrInvalidUTF8, fd.FullName())
			}
		case protoreflect.MessageKind:
			if err := check(v, fd.Message(), depth+1, left); err != nil {
				return err
			}
		}
	}
	return nil
}
