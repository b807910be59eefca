package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/concord-dev/concord/client"
)

// maxProfile bounds the length of a CPU profile.
const maxProfile = 10 * time.Second

// profile is a CPU profile of concord's leader being taken in the
// background.
type profile struct {
	done chan error
}

// startProfile saves a CPU profile of the current leader among endpoints,
// of at most maxProfile and at most length, to path.
func startProfile(ctx context.Context, endpoints []string, length time.Duration, path string) *profile {
	p := &profile{done: make(chan error, 1)}
	seconds := max(int(min(length, maxProfile)/time.Second), 1)
	go func() { p.done <- saveProfile(ctx, endpoints, seconds, path) }()
	return p
}

// wait returns once the profile is saved, or why it could not be.
func (p *profile) wait() error { return <-p.done }

func saveProfile(ctx context.Context, endpoints []string, seconds int, path string) error {
	return saveLeaderPage(ctx, endpoints, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), path)
}

// saveLeaderPage saves what the leader among endpoints serves at page
// (a profile, its metrics) to path.
func saveLeaderPage(ctx context.Context, endpoints []string, page, path string) error {
	leader, err := leaderAddr(ctx, endpoints)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	url := fmt.Sprintf("http://%s%s", leader, page)
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

// leaderAddr asks the cluster for its leader's client address.
func leaderAddr(ctx context.Context, endpoints []string) (string, error) {
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
		if m.GetRole() == "leader" {
			return m.GetClientAddr(), nil
		}
	}
	return "", fmt.Errorf("no leader among %v", endpoints)
}
