package raftnode

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// Configuration is a Raft configuration and the index of the log entry
// (or of the snapshot) that holds it.
type Configuration struct {
	Index   uint64
	Servers []Server
}

// Lists reports whether the configuration lists the member id.
func (c Configuration) Lists(id string) bool {
	for _, sv := range c.Servers {
		if sv.ID == id {
			return true
		}
	}
	return false
}

// LogConfigurations returns the newest configuration in this member's log
// and snapshot (latest, what Configuration reports too) and the one before
// it (committed). A leader appends a configuration entry only once its
// previous configuration is committed (one change at a time), and the
// member's log matches that leader's up to the entry: so the configuration
// before the newest is committed, whatever the member learnt of commits.
// A snapshot's configuration is committed, and so is the bootstrap
// configuration of a member of the initial cluster: with only one of them,
// committed is latest.
//
// It reads the log from its end back to the second configuration entry, so
// it is meant for rare checks, not for every request; it keeps the answer
// while the log's last entry stays the same (a member without a leader,
// asking again and again, reads the log once).
func (n *Node) LogConfigurations() (latest, committed Configuration, err error) {
	logs := n.store.logs
	first, err := logs.FirstIndex()
	if err != nil {
		return Configuration{}, Configuration{}, fmt.Errorf("reading the log's first index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return Configuration{}, Configuration{}, fmt.Errorf("reading the log's last index: %w", err)
	}
	var lastTerm uint64
	if last > 0 {
		var entry raft.Log
		if err := logs.GetLog(last, &entry); err != nil {
			return Configuration{}, Configuration{}, fmt.Errorf("reading log entry %d: %w", last, err)
		}
		lastTerm = entry.Term
	}
	n.configsMu.Lock()
	defer n.configsMu.Unlock()
	if c := &n.configs; c.valid && c.lastIndex == last && c.lastTerm == lastTerm {
		// A log rewritten by a leader of a later term ends with an entry
		// of that term.
		return c.latest, c.committed, nil
	}
	latest, committed, err = n.scanConfigurations(first, last)
	if err == nil {
		n.configs = configCache{valid: true, lastIndex: last, lastTerm: lastTerm, latest: latest, committed: committed}
	}
	return latest, committed, err
}

// configCache is LogConfigurations' last answer and the log's last entry
// it was read at.
type configCache struct {
	valid             bool
	lastIndex         uint64
	lastTerm          uint64
	latest, committed Configuration
}

func (n *Node) scanConfigurations(first, last uint64) (latest, committed Configuration, err error) {
	logs := n.store.logs
	metas, err := n.snaps.List()
	if err != nil {
		return Configuration{}, Configuration{}, fmt.Errorf("listing snapshots: %w", err)
	}
	var snapIndex uint64
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	var found []Configuration
	for i := last; i >= first && i > snapIndex && i > 0 && len(found) < 2; i-- {
		var entry raft.Log
		if err := logs.GetLog(i, &entry); err != nil {
			return Configuration{}, Configuration{}, fmt.Errorf("reading log entry %d: %w", i, err)
		}
		if entry.Type != raft.LogConfiguration {
			continue
		}
		found = append(found, Configuration{Index: i, Servers: servers(raft.DecodeConfiguration(entry.Data))})
	}
	if len(found) < 2 && len(metas) > 0 && metas[0].ConfigurationIndex > 0 {
		found = append(found, Configuration{Index: metas[0].ConfigurationIndex, Servers: servers(metas[0].Configuration)})
	}
	switch len(found) {
	case 0:
		return Configuration{}, Configuration{}, nil
	case 1:
		return found[0], found[0], nil
	default:
		return found[0], found[1], nil
	}
}

func servers(c raft.Configuration) []Server {
	out := make([]Server, 0, len(c.Servers))
	for _, s := range c.Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out
}
