package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// spawner starts child processes from one OS thread that stays alive, locked,
// for as long as the cluster runs. Children are started with Pdeathsig, which
// Linux ties to the thread that forked them: if the test process dies, or
// once the spawner stops, every child still running gets SIGKILL, so no
// member outlives the harness.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go func() {
		// Never unlocked: when this goroutine returns the thread exits,
		// which kills the children it started.
		runtime.LockOSThread()
		defer close(s.done)
		for r := range s.reqs {
			r.errc <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	errc := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
}

func (s *spawner) stop() {
	close(s.reqs)
	<-s.done
}

// process is one running member process.
type process struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	mu     sync.Mutex
	err    error
}

func (p *process) wait() {
	err := p.cmd.Wait()
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	p.log.Close()
	close(p.exited)
}

// alive reports whether the process has not exited.
func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *process) signal(sig syscall.Signal) error {
	if !p.alive() {
		return fmt.Errorf("process %d already exited: %v", p.cmd.Process.Pid, p.exitErr())
	}
	return p.cmd.Process.Signal(sig)
}

// kill sends SIGKILL (after SIGCONT, in case it is stopped) and waits for
// the process to exit.
func (p *process) kill() {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	<-p.exited
}
