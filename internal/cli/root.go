// Package cli is concord's command line: `concord server` runs a member, the
// other verbs (kv, session, lock, sem, id, cluster) talk to a cluster through
// the Go SDK, and `snapshot restore` seeds a new member offline. Output is for people by default and JSON with --json.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
)

// Version is set at build time.
var Version = "dev"

// ExitError carries a process exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

type globals struct {
	endpoints []string
	token     string
	cacert    string
	json      bool
	timeout   time.Duration
	flags     *pflag.FlagSet // the root's persistent flags
	stdout    io.Writer
	stderr    io.Writer
	stdin     io.Reader
}

// NewRoot returns the concord command tree.
func NewRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin}
	root := &cobra.Command{
		Use:   "concord",
		Short: "concord: a Raft-replicated core for distributed systems, in one binary",
		Long: `concord runs a replicated key-value core with sessions and watches
(concord server), and talks to it (kv, session, lock, sem, id, cluster,
snapshot).

Start a single member:   concord server
Write and read a key:    concord kv put greeting hello && concord kv get greeting`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	g.flags = pf
	defaultEndpoints := []string{"127.0.0.1:7070"}
	if env := cleanEndpoints(strings.Split(os.Getenv("CONCORD_ENDPOINTS"), ",")); len(env) > 0 {
		defaultEndpoints = env
	}
	pf.StringSliceVar(&g.endpoints, "endpoints", defaultEndpoints, "client addresses of members, comma separated (env CONCORD_ENDPOINTS)")
	// Not os.Getenv as the default: --help prints defaults.
	pf.StringVar(&g.token, "token", "", "bearer token, when the cluster requires one (env CONCORD_TOKEN, else CONCORD_AUTH_TOKEN)")
	pf.StringVar(&g.cacert, "cacert", os.Getenv("CONCORD_CACERT"), "PEM bundle of the CAs that signed the cluster's certificates (env CONCORD_CACERT; default: the system's roots); with it, host:port endpoints use TLS")
	pf.BoolVar(&g.json, "json", false, "print JSON for scripts")
	pf.DurationVar(&g.timeout, "timeout", 15*time.Second, "time limit of a command's requests")
	root.AddCommand(newServerCmd(g), newKVCmd(g), newSessionCmd(g), newLockCmd(g), newSemCmd(g), newIDCmd(g), newClusterCmd(g), newSnapshotCmd(g), newVersionCmd(g))
	return root
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	root := NewRoot(os.Stdin, os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			// err, not ee.Err: it may join other errors to it.
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		return ee.Code
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	if hint := hintFor(err); hint != "" {
		fmt.Fprintln(os.Stderr, "Hint:", hint)
	}
	return 1
}

func hintFor(err error) string {
	switch {
	case errors.Is(err, client.ErrUnavailable):
		return "is concord running? start one with `concord server`, or pass --endpoints"
	case errors.Is(err, client.ErrUnauthenticated):
		return "pass the cluster's token with --token or CONCORD_TOKEN (or CONCORD_AUTH_TOKEN)"
	case strings.Contains(err.Error(), "unknown shorthand flag") && strings.ContainsAny(err.Error(), "0123456789"):
		return "put negative numbers after --, e.g. concord kv add stock --min 0 -- -1"
	}
	return ""
}

// bearerToken is --token, or when the flag was not given CONCORD_TOKEN, or
// when that is unset the server's CONCORD_AUTH_TOKEN (a member's host runs
// both with one environment).
func (g *globals) bearerToken() string {
	if g.flags.Changed("token") {
		return g.token
	}
	if t := os.Getenv("CONCORD_TOKEN"); t != "" {
		return t
	}
	return os.Getenv("CONCORD_AUTH_TOKEN")
}

// cleanEndpoints trims spaces around addresses and drops empty ones, so
// that "a, b" and "a," (from --endpoints or CONCORD_ENDPOINTS) name a and b.
func cleanEndpoints(eps []string) []string {
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		if ep = strings.TrimSpace(ep); ep != "" {
			out = append(out, ep)
		}
	}
	return out
}

func (g *globals) config() (client.Config, error) {
	cfg := client.Config{Endpoints: cleanEndpoints(g.endpoints), Token: g.bearerToken(), DialTimeout: min(g.timeout, 5*time.Second), RetryTimeout: g.timeout}
	if g.cacert != "" {
		pool, err := config.LoadCAPool(g.cacert)
		if err != nil {
			return cfg, fmt.Errorf("--cacert: %w", err)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

func (g *globals) client(ctx context.Context) (*client.Client, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	return client.New(ctx, cfg)
}

// withClient runs f with a connected client and a context bounded by
// --timeout (or only by interrupts, for long-running verbs).
func (g *globals) withClient(cmd *cobra.Command, longRunning bool, f func(ctx context.Context, c *client.Client) error) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	return g.connect(cmd, longRunning, cfg, f)
}

// withAnyMember is withClient for verbs any member answers (the cluster's
// status, stale reads): when no leader is known within the dial timeout
// (a lost quorum), they are still served.
func (g *globals) withAnyMember(cmd *cobra.Command, f func(ctx context.Context, c *client.Client) error) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	cfg.AllowNoLeader = true
	cfg.DialTimeout = min(g.timeout/2, cfg.DialTimeout) // leave time for the call
	return g.connect(cmd, false, cfg, f)
}

func (g *globals) connect(cmd *cobra.Command, longRunning bool, cfg client.Config, f func(ctx context.Context, c *client.Client) error) error {
	ctx := cmd.Context()
	if !longRunning {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(ctx, c)
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json {
				return writeJSON(g.stdout, map[string]string{"version": Version})
			}
			fmt.Fprintln(g.stdout, "concord", Version)
			return nil
		},
	}
}
