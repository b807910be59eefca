package main

import (
	"time"

	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/cputime"
)

// cpuMeter measures how busy the servers, this process and the rest of the
// machine are during a phase, in cores (CPU seconds per second). Other
// processes compete for the same cores and skew the figures; the report
// shows how much.
type cpuMeter struct {
	c       *cluster.Cluster
	start   time.Time
	self    time.Duration
	server  time.Duration
	machine time.Duration
	ok      bool // server and machine times are available (Linux)
}

func startCPU(c *cluster.Cluster) *cpuMeter {
	m := &cpuMeter{c: c, start: time.Now(), self: cputime.Self()}
	server, sok := c.CPUTime()
	machine, mok := cputime.Machine()
	m.server, m.machine, m.ok = server, machine, sok && mok
	return m
}

// stop sets r's CPU figures. Server and other CPU stay 0 where the platform
// does not expose them.
func (m *cpuMeter) stop(r *Result) {
	wall := time.Since(m.start).Seconds()
	self := cputime.Self() - m.self
	r.BenchCores = self.Seconds() / wall
	server, sok := m.c.CPUTime()
	machine, mok := cputime.Machine()
	if !m.ok || !sok || !mok {
		return
	}
	server -= m.server
	r.ServerCores = server.Seconds() / wall
	r.OtherCores = max(0, (machine-m.machine-server-self).Seconds()/wall)
}
