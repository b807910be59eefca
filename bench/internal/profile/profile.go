// Package profile saves CPU profiles, metrics and heap profiles of a
// concord cluster's members while a benchmark runs.
package profile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/concord-dev/concord/client"
)

// maxProfile bounds the length of a CPU profile.
const maxProfile = 10 * time.Second

// Profile is a CPU profile of concord's leader (and of one follower) being
// taken in the background.
type Profile struct {
	done chan error
}

// Start saves a CPU profile of the current leader among endpoints, of at
// most maxProfile and at most length, to path, and one of a follower, if
// there is one, next to it (path with -follower before its extension).
func Start(ctx context.Context, endpoints []string, length time.Duration, path string) *Profile {
	p := &Profile{done: make(chan error, 1)}
	seconds := max(int(min(length, maxProfile)/time.Second), 1)
	go func() { p.done <- saveProfile(ctx, endpoints, seconds, path) }()
	return p
}

// Wait returns once the profiles are saved, or why they could not be.
func (p *Profile) Wait() error { return <-p.done }

func saveProfile(ctx context.Context, endpoints []string, seconds int, path string) error {
	page := fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds)
	follower := make(chan error, 1)
	go func() {
		// One follower too, when there is one: its CPU is the other half
		// of a replicated write.
		addr, err := memberAddr(ctx, endpoints, "follower")
		if err != nil {
			follower <- nil
			return
		}
		follower <- savePage(ctx, addr, page, strings.TrimSuffix(path, ".pprof")+"-follower.pprof")
	}()
	return errors.Join(SaveLeaderPage(ctx, endpoints, page, path), <-follower)
}

// SaveLeaderPage saves what the leader among endpoints serves at page
// (a profile, its metrics) to path.
func SaveLeaderPage(ctx context.Context, endpoints []string, page, path string) error {
	leader, err := memberAddr(ctx, endpoints, "leader")
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return savePage(ctx, leader, page, path)
}

// SaveAfter saves, once a measured phase is over, the leader's /metrics
// and heap profile to base.metrics and base.heap.pprof, and one follower's
// /metrics, when there is a follower, to base-follower.metrics. It returns
// what could not be saved.
func SaveAfter(ctx context.Context, endpoints []string, base string) error {
	err := errors.Join(
		SaveLeaderPage(ctx, endpoints, "/metrics", base+".metrics"),
		SaveLeaderPage(ctx, endpoints, "/debug/pprof/heap", base+".heap.pprof"))
	if addr, ferr := memberAddr(ctx, endpoints, "follower"); ferr == nil {
		err = errors.Join(err, savePage(ctx, addr, "/metrics", base+"-follower.metrics"))
	}
	return err
}

// savePage saves what the member at addr serves at page to path.
func savePage(ctx context.Context, addr, page, path string) error {
	url := fmt.Sprintf("http://%s%s", addr, page)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// memberAddr asks the cluster for the client address of a member in role
// (leader, follower).
func memberAddr(ctx context.Context, endpoints []string, role string) (string, error) {
	c, err := client.New(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range st.GetMembers() {
		if m.GetRole() == role {
			return m.GetClientAddr(), nil
		}
	}
	return "", fmt.Errorf("no %s among %v", role, endpoints)
}

// Self runs f, under the CPU profiler when path is set: a profile of the
// benchmark process itself, i.e. of the clients.
func Self(path string, f func() error) error {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return err
	}
	err = f()
	pprof.StopCPUProfile()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
