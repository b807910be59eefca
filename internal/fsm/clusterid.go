package fsm

import (
	"crypto/rand"
	"encoding/hex"
)

// clusterIDHexLen is the length of a cluster ID: 16 random bytes in hex.
const clusterIDHexLen = 32

// NewClusterID returns a random cluster ID for a SetClusterID entry.
func NewClusterID() string {
	var b [clusterIDHexLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// ValidClusterID reports whether id is a cluster ID as NewClusterID makes
// them: 32 lower-case hex digits.
func ValidClusterID(id string) bool {
	if len(id) != clusterIDHexLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ClusterID returns the cluster's ID as this member has applied it, ""
// until then. It takes no lock: the peer port asks it on every Raft
// connection.
func (f *FSM) ClusterID() string {
	if p := f.clusterIDv.Load(); p != nil {
		return *p
	}
	return ""
}

// setClusterID sets the cluster ID; the caller holds mu for writing.
func (f *FSM) setClusterID(id string) {
	f.clusterID = id
	f.clusterIDv.Store(&id)
}
