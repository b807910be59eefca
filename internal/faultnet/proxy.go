// Package faultnet is a TCP proxy that injects network faults per directed
// link, for tests. One Proxy sits in front of one member's peer port; the
// members dial from distinct loopback IPs (127.0.0.1, .2, ...), so the
// source IP of a connection names the link's sender and each directed link
// can be passed, blackholed, reset or delayed on its own.
package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what a link does to traffic.
type Mode int

const (
	// Pass forwards traffic.
	Pass Mode = iota
	// Blackhole accepts connections and reads and discards their bytes,
	// never closing them: the sender sees a peer that went silent.
	Blackhole
	// Reset closes connections abruptly (RST) as soon as they appear.
	Reset
)

func (m Mode) String() string {
	switch m {
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	default:
		return "pass"
	}
}

// Link is the behaviour of one directed link.
type Link struct {
	Mode Mode
	// Delay is added to every chunk forwarded while Mode is Pass.
	Delay time.Duration
}

// Proxy forwards connections to a target, applying per-source faults.
type Proxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	links  map[string]Link // by source IP
	conns  map[*pipe]struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

// Listen starts a proxy on addr forwarding to target.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: map[string]Link{}, conns: map[*pipe]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Retarget forwards connections accepted from now on to target.
func (p *Proxy) Retarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *Proxy) currentTarget() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Addr returns the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set sets the behaviour of traffic from source IP src. Existing
// connections switch at once; Reset closes them.
func (p *Proxy) Set(src string, l Link) {
	p.mu.Lock()
	p.links[src] = l
	var victims []*pipe
	for c := range p.conns {
		if c.src == src && l.Mode == Reset {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.reset()
	}
}

// Heal passes every link again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.links = map[string]Link{}
	p.mu.Unlock()
}

func (p *Proxy) link(src string) Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.links[src]
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	close(p.done)
	err := p.ln.Close()
	p.mu.Lock()
	conns := make([]*pipe, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src, _, _ := net.SplitHostPort(in.RemoteAddr().String())
		if p.link(src).Mode == Reset {
			resetConn(in)
			continue
		}
		out, err := net.DialTimeout("tcp", p.currentTarget(), 2*time.Second)
		if err != nil {
			resetConn(in)
			continue
		}
		c := &pipe{p: p, src: src, in: in, out: out}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go c.copy(out, in)
		go c.copy(in, out)
	}
}

type pipe struct {
	p       *Proxy
	src     string
	in, out net.Conn
	once    sync.Once
}

// copy forwards from r to w, consulting the link for every chunk: a
// blackholed link reads and drops, a delayed one sleeps first.
func (c *pipe) copy(w io.Writer, r io.Reader) {
	defer c.p.wg.Done()
	defer c.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			l := c.p.link(c.src)
			switch {
			case l.Mode == Blackhole:
				// Drop it; keep the connection open.
			case l.Mode == Reset:
				c.reset()
				return
			default:
				if l.Delay > 0 {
					select {
					case <-time.After(l.Delay):
					case <-c.p.done:
						return
					}
				}
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *pipe) close() {
	c.once.Do(func() {
		c.in.Close()
		c.out.Close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

func (c *pipe) reset() {
	resetConn(c.in)
	resetConn(c.out)
	c.close()
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
