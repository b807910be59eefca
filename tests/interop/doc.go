// Package interop checks that a client written without the Go SDK and
// without Connect can use concord: a plain grpc-go client over cleartext
// HTTP/2 (as any gRPC library would call it, with the method names of the
// proto and the protobuf codec), and plain HTTP/JSON (net/http and curl, as
// docs/kv.md, docs/locks.md and docs/sessions.md show). It has only tests.
package interop
