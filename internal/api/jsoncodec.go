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
// maxMessages nested messages (JSON objects) before it is decoded, and a
// batch message of more than maxBatchCalls calls.
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

// countJSON counts the objects of a JSON text below its top-level one, and
// the objects that are elements of an array that is a member of the
// top-level object (a BatchRequest's calls), without decoding it. What is
// not JSON is left to the decoder.
func countJSON(data []byte) (objects, calls int) {
	depth := 0
	var kinds [2]byte // the containers at depths 1 and 2
	inString, escaped := false, false
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
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if c == '{' && depth > 0 {
				objects++
				if depth == 2 && kinds[0] == '{' && kinds[1] == '[' {
					calls++
				}
			}
			if depth < len(kinds) {
				kinds[depth] = c
			}
			depth++
		case '}', ']':
			depth = max(depth-1, 0)
		}
	}
	return objects, calls
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
		objects, calls := countJSON(data)
		if c.batch && calls > maxBatchCalls {
			return batchTooLarge{calls: calls}
		}
		if objects > c.maxMessages {
			return fmt.Errorf("unmarshal into %T: %w: %d objects; the limit is %d", m, vtcodec.ErrTooManyMessages, objects, c.maxMessages)
		}
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}
