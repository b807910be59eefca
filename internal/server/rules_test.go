package server

import (
	"testing"

	"github.com/concord-dev/concord/internal/raftnode"
)

// The raise goes ahead only if the configuration it asked is still the
// cluster's: a member added, removed or moved meanwhile was not asked.
func TestSameServersSeesEveryChangeButAPromotion(t *testing.T) {
	asked := []raftnode.Server{{ID: "a", Addr: "10.0.0.1:2380", Voter: true}, {ID: "b", Addr: "10.0.0.2:2380"}}
	cases := []struct {
		name string
		now  []raftnode.Server
		same bool
	}{
		{"unchanged", []raftnode.Server{{ID: "a", Addr: "10.0.0.1:2380", Voter: true}, {ID: "b", Addr: "10.0.0.2:2380"}}, true},
		{"b promoted, listed first", []raftnode.Server{{ID: "b", Addr: "10.0.0.2:2380", Voter: true}, {ID: "a", Addr: "10.0.0.1:2380", Voter: true}}, true},
		{"c added", []raftnode.Server{{ID: "a", Addr: "10.0.0.1:2380", Voter: true}, {ID: "b", Addr: "10.0.0.2:2380"}, {ID: "c", Addr: "10.0.0.3:2380"}}, false},
		{"b removed", []raftnode.Server{{ID: "a", Addr: "10.0.0.1:2380", Voter: true}}, false},
		{"b replaced by c", []raftnode.Server{{ID: "a", Addr: "10.0.0.1:2380", Voter: true}, {ID: "c", Addr: "10.0.0.2:2380"}}, false},
		{"b moved", []raftnode.Server{{ID: "a", Addr: "10.0.0.1:2380", Voter: true}, {ID: "b", Addr: "10.0.0.9:2380"}}, false},
	}
	for _, c := range cases {
		if got := sameServers(asked, c.now); got != c.same {
			t.Errorf("%s: sameServers = %v, want %v", c.name, got, c.same)
		}
	}
}
