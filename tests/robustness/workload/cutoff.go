package workload

import (
	"fmt"

	"github.com/concord-dev/concord/internal/faultnet"
)

// clientIP is the address the harness's clients dial from.
const clientIP = "127.0.0.1"

// cutOff is a client's own way to the members: a proxy in front of each
// member's client address, which the client blackholes to cut itself off
// from the whole cluster, as a network partition of that client alone
// would. Its SDK then sees every member go silent, and nothing but its own
// clock tells it that its session, and the locks it holds, are gone.
type cutOff struct {
	proxies []*faultnet.Proxy
}

// newCutOff starts a proxy in front of each of endpoints.
func newCutOff(endpoints []string) (*cutOff, error) {
	c := &cutOff{}
	for _, ep := range endpoints {
		p, err := faultnet.Listen(clientIP+":0", ep)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("proxy for %s: %w", ep, err)
		}
		c.proxies = append(c.proxies, p)
	}
	return c, nil
}

// endpoints returns the proxies' addresses, for the client to dial.
func (c *cutOff) endpoints() []string {
	out := make([]string, len(c.proxies))
	for i, p := range c.proxies {
		out[i] = p.Addr()
	}
	return out
}

// cut blackholes the client's traffic both ways: its connections stay
// open, and nothing gets through.
func (c *cutOff) cut() {
	for _, p := range c.proxies {
		p.Set(clientIP, faultnet.Link{Mode: faultnet.Blackhole})
	}
}

// heal resets the client's connections (a blackhole dropped parts of their
// streams) and passes its traffic again.
func (c *cutOff) heal() {
	for _, p := range c.proxies {
		p.Set(clientIP, faultnet.Link{Mode: faultnet.Reset})
		p.Heal()
	}
}

func (c *cutOff) close() {
	for _, p := range c.proxies {
		_ = p.Close()
	}
}
