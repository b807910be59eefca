package api

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/concord-dev/concord/api/vtcodec"
)

// strictJSON is the JSON codec of the HTTP/JSON API. Unlike connect's own,
// it refuses fields the schema does not know instead of dropping them: a
// misspelt "compare" would otherwise turn a fenced write into an unguarded
// one, and a misspelt "wait" an acquire that queues into a try-lock.
//
// Like the binary codec of the API, it refuses a message of more than
// maxMessages nested messages and elements of repeated fields (countJSON)
// before it is decoded, and a batch message of more than maxBatchCalls
// calls.
type strictJSON struct {
	name        string
	maxMessages int
	batch       bool
}

// strictJSONOption serves JSON with strictJSON under both names connect
// answers to.
func strictJSONOption(maxMessages int, batch bool) connect.Option {
	return connect.WithOptions(connect.WithCodec(strictJSON{"json", maxMessages, batch}),
		connect.WithCodec(strictJSON{"json; charset=utf-8", maxMessages, batch}))
}

// maxJSONDepth is protojson's nesting limit: countJSON stops deeper, and
// leaves the text to the decoder, which refuses it.
const maxJSONDepth = 10000

// countJSON counts, without decoding it, the values of a JSON text that
// decode to a message or an element each: objects that are members of an
// object (a message field's value) and elements of arrays (a repeated
// field's), the top-level value aside; and the objects that are elements of
// an array that is a member of the top-level object (a BatchRequest's
// calls). What is not JSON is left to the decoder.
func countJSON(data []byte) (values, calls int) {
	var stack [maxJSONDepth]byte
	depth := 0
	inString, escaped := false, false
	// first is set after '[': the next value is the array's first
	// element.
	first := false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		if first && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			first = false
			if c != ']' {
				values++
			}
		}
		switch c {
		case '"':
			inString = true
		case ',':
			if depth > 0 && stack[depth-1] == '[' {
				values++
			}
		case '{', '[':
			if c == '{' && depth > 0 && stack[depth-1] == '{' {
				values++
			}
			if c == '{' && depth == 2 && stack[0] == '{' && stack[1] == '[' {
				calls++
			}
			if depth == len(stack) {
				return values, calls
			}
			stack[depth] = c
			depth++
			first = c == '['
		case '}', ']':
			depth = max(depth-1, 0)
		}
	}
	return values, calls
}

func (c strictJSON) Name() string { return c.name }

func (strictJSON) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("api: %T is not a protobuf message", m)
	}
	return protojson.Marshal(pm)
}

func (c strictJSON) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("api: %T is not a protobuf message", m)
	}
	if len(data) == 0 {
		return errors.New("an empty body is not a JSON object")
	}
	if c.maxMessages > 0 {
		values, calls := countJSON(data)
		if c.batch && calls > maxBatchCalls {
			return batchTooLarge{calls: calls}
		}
		if values > c.maxMessages {
			return fmt.Errorf("unmarshal into %T: %w: %d objects and array elements; the limit is %d", m, vtcodec.ErrTooManyMessages, values, c.maxMessages)
		}
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}
