package cluster

import (
	"os"
	"strings"
)

// Concord runs `concord server` members with their defaults (the seglog
// Raft log store).
var Concord Flavor = concordFlavor{}

// ConcordBolt runs `concord server` members with --raft-log-store bolt.
var ConcordBolt Flavor = concordFlavor{extra: []string{"--raft-log-store", "bolt"}}

// ConcordWAL runs `concord server` members with --raft-log-store wal.
var ConcordWAL Flavor = concordFlavor{extra: []string{"--raft-log-store", "wal"}}

// ConcordNoDefer runs `concord server` members with
// --disable-lock-queue-defer: every acquire is written at once, as before
// the leader held back the ones that queue (lockbench's A/B of it).
var ConcordNoDefer Flavor = concordFlavor{extra: []string{"--disable-lock-queue-defer"}}

// Etcd runs etcd members with etcd's defaults (fsync on).
var Etcd Flavor = etcdFlavor{}

type concordFlavor struct{ extra []string }

func (f concordFlavor) Args(m Member, all []Member) []string {
	return append([]string{"server",
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client", m.ClientAddr,
		"--listen-peer", m.PeerAddr,
		"--initial-cluster", initialCluster(all, ""),
		"--log-format", "json",
		"--log-level", logLevel(),
	}, f.extra...)
}

func (concordFlavor) ReadyPath() string { return "/readyz" }

type etcdFlavor struct{}

func (etcdFlavor) Args(m Member, all []Member) []string {
	client, peer := "http://"+m.ClientAddr, "http://"+m.PeerAddr
	return []string{
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", initialCluster(all, "http://"),
		"--initial-cluster-state", "new",
		"--log-level", "error",
	}
}

// ReadyPath is etcd's health check, which answers 200 only once a
// linearizable read through the leader succeeds.
func (etcdFlavor) ReadyPath() string { return "/health" }

// initialCluster formats name=<scheme>peer,... for all members.
func initialCluster(all []Member, scheme string) string {
	parts := make([]string, len(all))
	for i, m := range all {
		parts[i] = m.Name + "=" + scheme + m.PeerAddr
	}
	return strings.Join(parts, ",")
}

// logLevel is the members' log level: warn, or CONCORD_BENCH_LOG_LEVEL.
func logLevel() string {
	if l := os.Getenv("CONCORD_BENCH_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}
