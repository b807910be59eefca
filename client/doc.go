// Package client is the Go SDK of concord.
//
//	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7070"}})
//	if err != nil { ... }
//	defer c.Close()
//	if _, err := c.Put(ctx, "greeting", []byte("hello")); err != nil { ... }
//	kv, err := c.Get(ctx, "greeting")
//
// Every call takes a ctx. Reads are linearizable unless asked otherwise.
// Calls go to the leader, learned from the endpoints at start, after a
// failure, and whenever a member answers that it only forwarded the calls
// (the leader changed); any member serves them meanwhile. Writes carry a
// request ID, so the SDK retries them across leader changes and member
// failures without applying any twice. Errors wrap the exported
// sentinels (ErrNotFound, ErrCompareFailed, ErrSessionExpired, ErrTooLarge,
// ...): test them with errors.Is.
//
// Concurrent KV calls, lock acquires and releases, lock waits and ID
// requests to one member share one batch stream, sent together as they
// queue. The stream runs on a small framed protocol that the SDK switches
// its connection to with an HTTP/1.1 Upgrade (api/batchwire), and on
// Connect's gRPC stream when a member refuses that or
// Config.DisableFramedBatch is set; the other calls use Connect.
//
// The SDK never imports concord's server packages: it depends only on the
// generated API in github.com/concord-dev/concord/api.
package client
