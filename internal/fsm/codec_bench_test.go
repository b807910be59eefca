package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// The command codec: the generated (vtprotobuf) methods the write path
// uses, against reflection-driven proto.Marshal/Unmarshal, on a lock
// acquire as lockbench sends it (docs/architecture.md, the write path).

func benchCommand() *internalv1.Command {
	return &internalv1.Command{
		TimeUnixNano: 1764140000000000000,
		Meta:         &concordv1.WriteMeta{ClientId: "c-0123456789abcdef0123", RequestId: 123456},
		Op: &internalv1.Command_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
			Claims:  []*concordv1.LockClaim{{Name: "bench/lock/000042"}},
			Session: 7766554433, Owner: "owner-0123456789abcdef", Wait: true,
		}},
	}
}

func TestCommandCodecsAgree(t *testing.T) {
	cmd := benchCommand()
	a, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cmd.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	var fromA, fromB internalv1.Command
	if err := fromA.UnmarshalVT(a); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, &fromB); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&fromA, cmd) || !proto.Equal(&fromB, cmd) {
		t.Fatalf("the codecs disagree:\n%v\n%v\n%v", cmd, &fromA, &fromB)
	}
}

func BenchmarkCommandDecodeProto(b *testing.B) {
	data, _ := proto.Marshal(benchCommand())
	b.ReportAllocs()
	for b.Loop() {
		var c internalv1.Command
		if err := proto.Unmarshal(data, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCommandDecodeVT(b *testing.B) {
	data, _ := proto.Marshal(benchCommand())
	b.ReportAllocs()
	for b.Loop() {
		var c internalv1.Command
		if err := c.UnmarshalVT(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCommandEncodeProto(b *testing.B) {
	c := benchCommand()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCommandEncodeVT(b *testing.B) {
	c := benchCommand()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.MarshalVT(); err != nil {
			b.Fatal(err)
		}
	}
}
