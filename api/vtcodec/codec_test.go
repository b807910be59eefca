package vtcodec

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

func sampleBatch() *concordv1.BatchRequest {
	return &concordv1.BatchRequest{Calls: []*concordv1.BatchCall{
		{Id: 1, TimeoutMs: 500, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte{0xff, 0}}}},
		{Id: 2, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
			Claims: []*concordv1.LockClaim{{Name: "orders/42"}, {Name: "straße"}}, Session: 9, Owner: "worker-7", Wait: true}}},
		{Id: 3, Request: &concordv1.BatchCall_Txn{Txn: &concordv1.TxnRequest{
			Success: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: []byte("a")}}}}}}},
		{Id: 4, Request: &concordv1.BatchCall_LockRelease{LockRelease: &concordv1.ReleaseRequest{Names: []string{"orders/42"}, Session: 9, Owner: "worker-7", Token: 77}}},
	}}
}

func TestRoundTripMatchesProto(t *testing.T) {
	var c Codec
	msg := sampleBatch()
	ours, err := c.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var a, b concordv1.BatchRequest
	if err := proto.Unmarshal(ours, &a); err != nil {
		t.Fatalf("proto cannot read our encoding: %v", err)
	}
	if err := c.Unmarshal(theirs, &b); err != nil {
		t.Fatalf("we cannot read proto's encoding: %v", err)
	}
	if !proto.Equal(&a, msg) || !proto.Equal(&b, msg) {
		t.Fatalf("round trips differ:\n%v\n%v\n%v", msg, &a, &b)
	}
	// MarshalAppend keeps what dst held.
	out, err := c.MarshalAppend([]byte("prefix"), msg)
	if err != nil || string(out[:6]) != "prefix" || string(out[6:]) != string(ours) {
		t.Fatalf("MarshalAppend: %q, %v", out, err)
	}
}

func TestUnmarshalReplacesContents(t *testing.T) {
	var c Codec
	data, _ := c.Marshal(&concordv1.ReleaseRequest{Names: []string{"b"}})
	m := &concordv1.ReleaseRequest{Names: []string{"a"}, Token: 5}
	if err := c.Unmarshal(data, m); err != nil {
		t.Fatal(err)
	}
	if len(m.GetNames()) != 1 || m.GetNames()[0] != "b" || m.GetToken() != 0 {
		t.Fatalf("decoding merged into the old contents: %v", m)
	}
}

// A string that is not UTF-8, however deep, is refused, as proto refuses
// it; bytes fields may hold anything.
func TestRefusesInvalidUTF8(t *testing.T) {
	var c Codec
	msg := sampleBatch()
	msg.Calls[1].GetLockAcquire().Claims[1].Name = "bad\xffname"
	data, err := proto.MarshalOptions{}.Marshal(msg)
	if err == nil {
		t.Fatal("proto encoded an invalid string; the test needs its refusal")
	}
	// Build the bytes by hand: the generated encoder does not check.
	data, err = c.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(data, &concordv1.BatchRequest{}); err == nil {
		t.Fatal("proto accepted an invalid string")
	}
	err = c.Unmarshal(data, &concordv1.BatchRequest{})
	if !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("error %v, want ErrInvalidUTF8", err)
	}
}

// Check bounds nesting as proto.Unmarshal does.
func TestCheckBoundsDepth(t *testing.T) {
	md := (&structpb.Value{}).ProtoReflect().Descriptor()
	nest := func(levels int) []byte {
		b := protowire.AppendTag(nil, 3, protowire.BytesType) // string_value
		b = protowire.AppendBytes(b, []byte("x"))
		for range levels {
			// Value.list_value (6) -> ListValue.values (1) -> Value
			lv := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
			b = protowire.AppendBytes(protowire.AppendTag(nil, 6, protowire.BytesType), lv)
		}
		return b
	}
	if err := Check(nest(100), md); err != nil {
		t.Fatalf("100 levels: %v", err)
	}
	if err := Check(nest(maxDepth), md); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("%d levels (two messages each): %v, want ErrTooDeep", maxDepth, err)
	}
}

// Whatever the codec accepts, proto accepts and decodes the same; the
// codec may refuse more (vtprotobuf refuses a known field sent with the
// wrong wire type, which proto keeps as unknown).
func FuzzUnmarshalAgreesWithProto(f *testing.F) {
	var c Codec
	seed, _ := c.Marshal(sampleBatch())
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ours, theirs concordv1.BatchRequest
		if err := c.Unmarshal(data, &ours); err != nil {
			return
		}
		if err := proto.Unmarshal(data, &theirs); err != nil {
			t.Fatalf("codec accepted what proto refuses (%v)", err)
		}
		// Unknown fields are kept as they came on one side and re-encoded
		// on the other (a non-minimal tag, say); the server ignores them.
		dropUnknown(ours.ProtoReflect())
		dropUnknown(theirs.ProtoReflect())
		if !proto.Equal(&ours, &theirs) {
			t.Fatalf("decodings differ:\n%v\n%v", &ours, &theirs)
		}
	})
}

// dropUnknown clears the unknown fields of m and of every message in it.
func dropUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				dropUnknown(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					dropUnknown(mv.Message())
					return true
				})
			}
		default:
			dropUnknown(v.Message())
		}
		return true
	})
}

func BenchmarkUnmarshalBatch(b *testing.B) {
	var c Codec
	data, _ := proto.Marshal(sampleBatch())
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m concordv1.BatchRequest
			if err := proto.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vtcodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m concordv1.BatchRequest
			if err := c.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMarshalBatch(b *testing.B) {
	var c Codec
	msg := sampleBatch()
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vtcodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Marshal(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCheckBatch(b *testing.B) {
	data, _ := proto.Marshal(sampleBatch())
	md := (&concordv1.BatchRequest{}).ProtoReflect().Descriptor()
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(data, md); err != nil {
			b.Fatal(err)
		}
	}
}

// A codec with MaxMessages refuses a message of more nested messages (and
// repeated string elements) before decoding it, allocating nothing for
// them; the zero codec, which clients use, bounds nothing.
func TestMaxMessagesRefusesBeforeDecoding(t *testing.T) {
	var data []byte
	for range 1 << 17 {
		data = protowire.AppendTag(data, 1, protowire.BytesType) // an empty compare
		data = protowire.AppendBytes(data, nil)
	}
	limited := Codec{MaxMessages: 1 << 16}
	var m concordv1.TxnRequest
	var err error
	allocs := testing.AllocsPerRun(3, func() { err = limited.Unmarshal(data, &m) })
	if !errors.Is(err, ErrTooManyMessages) {
		t.Fatalf("got %v, want ErrTooManyMessages", err)
	}
	// Decoding would allocate for each of the 1<<17 compares. Refusing
	// takes a few (5; under -race, whose sync.Pool drops a quarter
	// of what is put back, up to 12 were seen, failing 3 runs in 30
	// against a bound of 10).
	if allocs > 64 {
		t.Fatalf("refusing took %v allocations", allocs)
	}
	if err := (Codec{}).Unmarshal(data, &m); err != nil || len(m.GetCompare()) != 1<<17 {
		t.Fatalf("the zero codec: %v, %d compares", err, len(m.GetCompare()))
	}
	// Exactly the limit passes, nested messages and repeated strings
	// counted at every depth.
	at := &concordv1.BatchRequest{}
	for range 4 {
		at.Calls = append(at.Calls, &concordv1.BatchCall{Request: &concordv1.BatchCall_LockRelease{LockRelease: &concordv1.ReleaseRequest{Names: []string{"a", "b"}}}})
	}
	b, err := proto.Marshal(at)
	if err != nil {
		t.Fatal(err)
	}
	if err := (Codec{MaxMessages: 16}).Unmarshal(b, &concordv1.BatchRequest{}); err != nil {
		t.Fatalf("16 messages and elements at a limit of 16: %v", err)
	}
	if err := (Codec{MaxMessages: 15}).Unmarshal(b, &concordv1.BatchRequest{}); !errors.Is(err, ErrTooManyMessages) {
		t.Fatalf("16 messages and elements at a limit of 15: %v", err)
	}
}

// Elements of repeated scalar fields count too, packed or not: an unpacked
// varint takes 2 bytes on the wire and 8 decoded, with the slice's growth
// some 40 MB for 2 MiB.
func TestMaxMessagesCountsRepeatedScalars(t *testing.T) {
	var unpacked, packed []byte
	for range 1 << 17 {
		unpacked = protowire.AppendTag(unpacked, 2, protowire.VarintType) // held_tokens
		unpacked = protowire.AppendVarint(unpacked, 0)
		packed = protowire.AppendVarint(packed, 1<<20)
	}
	packed = protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), packed)
	limited := Codec{MaxMessages: 1 << 16}
	for name, data := range map[string][]byte{"unpacked": unpacked, "packed": packed} {
		var m concordv1.KeepAliveRequest
		if err := limited.Unmarshal(data, &m); !errors.Is(err, ErrTooManyMessages) {
			t.Errorf("%s: got %v (%d tokens), want ErrTooManyMessages", name, err, len(m.GetHeldTokens()))
		}
	}
	ok, err := proto.Marshal(&concordv1.KeepAliveRequest{HeldTokens: make([]uint64, 1<<16)})
	if err != nil {
		t.Fatal(err)
	}
	if err := limited.Unmarshal(ok, &concordv1.KeepAliveRequest{}); err != nil {
		t.Fatalf("1<<16 tokens at a limit of 1<<16: %v", err)
	}
}
