// Package raftnode runs one member's Raft: hashicorp/raft with raft-boltdb
// for the log and stable store, file snapshots, and a network transport over
// a stream layer the caller provides (so Raft can share the peer port with
// the members' internal RPC). It is the only package that imports
// hashicorp/raft; the rest of concord sees the small StateMachine interface
// and the Node methods.
package raftnode
