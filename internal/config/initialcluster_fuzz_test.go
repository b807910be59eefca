package config

import (
	"net"
	"strings"
	"testing"
)

// FuzzParseInitialCluster parses arbitrary --initial-cluster values: what
// it accepts lists named members with addresses, in name order; and what
// Validate then accepts names every member validly, once, at a host:port
// of its own.
func FuzzParseInitialCluster(f *testing.F) {
	f.Add("n1=10.0.0.1:7080,n2=10.0.0.2:7080,n3=10.0.0.3:7080")
	f.Add("n1=http://127.0.0.1:7080")
	f.Add(" n2 = tcp://[::1]:1 ,n1=a=b")
	f.Add("n1=10.0.0.1:7080,n1=10.0.0.2:7080")
	f.Add("n1=,=x")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := ParseInitialCluster(s)
		if err != nil || len(peers) == 0 {
			return
		}
		for i, p := range peers {
			if p.Name == "" || p.Addr == "" || strings.ContainsAny(p.Name, "=,") || strings.Contains(p.Addr, ",") {
				t.Fatalf("%q parsed to %+v", s, peers)
			}
			if i > 0 && peers[i-1].Name > p.Name {
				t.Fatalf("%q parsed to %+v, out of name order", s, peers)
			}
		}
		var c Server
		c.SetDefaults()
		c.Name = peers[0].Name
		c.AdvertisePeer = peers[0].Addr
		c.InitialCluster = peers
		if c.Validate() != nil {
			return
		}
		names, addrs := map[string]bool{}, map[string]bool{}
		for _, p := range peers {
			if !nameRE.MatchString(p.Name) || names[p.Name] || addrs[p.Addr] {
				t.Fatalf("%q validated with member %+v", s, p)
			}
			if _, _, err := net.SplitHostPort(p.Addr); err != nil {
				t.Fatalf("%q validated with member %+v: %v", s, p, err)
			}
			names[p.Name], addrs[p.Addr] = true, true
		}
	})
}
