package api

import (
	"testing"

	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// FuzzStrictJSON decodes arbitrary bodies as the HTTP/JSON API does. A body
// it accepts encodes back to JSON that decodes to the same message (nothing
// the client sent is dropped or changed on the way); a body it refuses gets
// an error that says why.
func FuzzStrictJSON(f *testing.F) {
	c := strictJSON{name: "json", maxMessages: minRequestMessages}
	for _, m := range []proto.Message{
		&concordv1.TxnRequest{
			Compare: []*concordv1.Compare{{Key: []byte("k"), Target: concordv1.Compare_TARGET_VERSION, Result: concordv1.Compare_RESULT_GREATER, Number: 3}},
			Success: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte{0, 0xff}, Session: 7}}}},
			Failure: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Range{Range: &concordv1.RangeRequest{Key: []byte("k/"), Prefix: true}}}},
		},
		&concordv1.TxnRequest{Meta: &concordv1.WriteMeta{ClientId: "c", RequestId: 1 << 60}},
	} {
		b, err := c.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"compare":[{"key":"aw==","target":"TARGET_VALUE","value":"dg=="}]}`))
	f.Add([]byte(`{"compares":[]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m concordv1.TxnRequest
		if err := c.Unmarshal(data, &m); err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		b, err := c.Marshal(&m)
		if err != nil {
			t.Fatalf("a decoded body does not encode: %v", err)
		}
		var again concordv1.TxnRequest
		if err := c.Unmarshal(b, &again); err != nil {
			t.Fatalf("%s decoded, but its encoding %s does not: %v", data, b, err)
		}
		if !proto.Equal(&m, &again) {
			t.Fatalf("%s decoded to %v, its encoding %s to %v", data, &m, b, &again)
		}
	})
}
