package api

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// strictJSON is the JSON codec of the HTTP/JSON API. Unlike connect's own,
// it refuses fields the schema does not know instead of dropping them: a
// misspelt "compare" would otherwise turn a fenced write into an unguarded
// one, and a misspelt "wait" an acquire that queues into a try-lock.
type strictJSON struct{ name string }

// strictJSONOption serves JSON with strictJSON under both names connect
// answers to.
func strictJSONOption() connect.Option {
	return connect.WithOptions(connect.WithCodec(strictJSON{"json"}), connect.WithCodec(strictJSON{"json; charset=utf-8"}))
}

func (c strictJSON) Name() string { return c.name }

func (strictJSON) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("api: %T is not a protobuf message", m)
	}
	return protojson.Marshal(pm)
}

func (strictJSON) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("api: %T is not a protobuf message", m)
	}
	if len(data) == 0 {
		return errors.New("an empty body is not a JSON object")
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}
