package cputime

import (
	"fmt"
	"io"
	"time"
)

// BusyOther is the CPU use of other processes, in cores, above which a
// phase's figures are skewed (see Cores.Skewed).
const BusyOther = 0.1

// Source reports the CPU time (user and system) the servers under test have
// used so far, and false where it is not known. *cluster.Cluster is one.
type Source interface {
	CPUTime() (time.Duration, bool)
}

// Cores is how busy the machine was during a phase, in cores (CPU seconds
// per second of wall time).
type Cores struct {
	// Bench is this process (the load generator).
	Bench float64
	// Server is the Source's servers; 0 without a Source.
	Server float64
	// Other is everything else on the machine: other processes compete for
	// the same cores and skew the figures.
	Other float64
	// ServerOK says Server and Other are known. They are not (and stay 0)
	// where the Source or the platform (Machine) does not expose them.
	ServerOK bool
}

// Meter measures the CPU the servers, this process and the rest of the
// machine use from Start to Stop.
type Meter struct {
	src                   Source
	start                 time.Time
	self, server, machine time.Duration
	ok                    bool
}

// Start begins to measure. src may be nil where no servers are under test:
// then Server is 0 and Other is the machine's CPU but this process's.
func Start(src Source) *Meter {
	m := &Meter{src: src, start: time.Now(), self: Self()}
	m.server, m.machine, m.ok = m.read()
	return m
}

// read returns the servers' and the machine's CPU time, and whether both
// are known.
func (m *Meter) read() (server, machine time.Duration, ok bool) {
	sok := true
	if m.src != nil {
		server, sok = m.src.CPUTime()
	}
	machine, mok := Machine()
	return server, machine, sok && mok
}

// Stop returns the CPU use since Start. Bench is always set; Server and
// Other only where ServerOK.
func (m *Meter) Stop() Cores {
	wall := time.Since(m.start).Seconds()
	self := Self() - m.self
	c := Cores{Bench: self.Seconds() / wall}
	server, machine, ok := m.read()
	if !m.ok || !ok {
		return c
	}
	server -= m.server
	c.ServerOK = true
	c.Server = server.Seconds() / wall
	c.Other = max(0, (machine-m.machine-server-self).Seconds()/wall)
	return c
}

// Skewed reports whether other processes used more than BusyOther cores.
func (c Cores) Skewed() bool { return c.Other > BusyOther }

// Warn writes a warning to w if the figures are skewed.
func (c Cores) Warn(w io.Writer) {
	if c.Skewed() {
		fmt.Fprintf(w, "  warning: other processes used %.2f cores meanwhile; these figures are skewed\n", c.Other)
	}
}
