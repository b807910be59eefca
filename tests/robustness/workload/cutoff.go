package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/concord-dev/concord/internal/faultnet"
)

// clientIP is the address the harness's clients dial from.
const clientIP = "127.0.0.1"

// cutOff is a client's own way to the members: a proxy in front of each
// member's client address, which the client blackholes to cut itself off
// from the whole cluster, as a network partition of that client alone
// would. Its SDK then sees every member go silent, and nothing but its own
// clock tells it that its session, and the locks it holds, are gone.
//
// A nil *cutOff is a client that never cuts itself off: whileHolding
// declines, close does nothing.
type cutOff struct {
	proxies []*faultnet.Proxy
	// limit is the most times the client cuts itself off (its
	// HolderConfig.Stalls), n the times so far; wait is the longest it
	// stays cut off waiting to be told; counters are its workload's.
	limit, n int
	wait     time.Duration
	counters *counters
}

// holderCutOff returns the endpoints a client of a workload that holds
// locks (cfg) dials. A client that stalls (cfg.Stalls > 0) dials them
// through a new cutOff, returned for it to cut itself off with
// (whileHolding) and to close; any other dials the members, with a nil
// cutOff.
func holderCutOff(env *Env, cfg HolderConfig, counters *counters) (*cutOff, []string, error) {
	endpoints := env.Cluster.Endpoints()
	if cfg.Stalls <= 0 {
		return nil, endpoints, nil
	}
	c, err := newCutOff(endpoints)
	if err != nil {
		return nil, nil, err
	}
	c.limit, c.wait, c.counters = cfg.Stalls, 2*stallFor(env, cfg.TTL), counters
	return c, c.endpoints(), nil
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

// whileHolding is the cut-off step of a client holding a grant, lost its
// Lost channel: one time in 12 (drawn from rng while the client has
// cut-offs left; no draw otherwise, so a seed replays the same choices),
// it cuts itself off from the cluster and keeps holding until the SDK
// tells it the grant is lost, by its own count of the session's deadline
// as no keep-alive gets through, or at most twice a stall (or until ctx
// ends); then it heals. Meanwhile the server expires the session and
// grants the lock to a waiter: the loss-notice checker
// (checker.CheckLossNotice) holds the SDK's deadline against that grant.
// It reports whether the client was cut off; it then gives its grant up,
// which the server refuses unless the session outlived the cut.
func (c *cutOff) whileHolding(ctx context.Context, rng *rand.Rand, lost <-chan struct{}) bool {
	if c == nil || c.n >= c.limit || rng.IntN(12) != 0 {
		return false
	}
	c.n++
	c.counters.add("cut-offs", 1)
	c.cut()
	t := time.NewTimer(c.wait)
	select {
	case <-lost:
		c.counters.add("cut-offs told", 1)
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	c.heal()
	return true
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
	if c == nil {
		return
	}
	for _, p := range c.proxies {
		_ = p.Close()
	}
}
