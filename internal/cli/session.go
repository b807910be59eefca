package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/concord-dev/concord/client"
)

func newSessionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "Create, keep alive, revoke and list sessions"}
	cmd.AddCommand(sessionCreate(g), sessionKeepAlive(g), sessionRevoke(g), sessionLs(g))
	return cmd
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: session ID %q must be a positive integer", client.ErrInvalidArgument, s)
	}
	return id, nil
}

func sessionCreate(g *globals) *cobra.Command {
	var ttl time.Duration
	var name string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a session and print its ID (it expires after --ttl unless kept alive)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				s, err := cl.NewSession(ctx, client.WithTTL(ttl), client.WithName(name))
				if err != nil {
					return err
				}
				s.Orphan()
				if g.json {
					return writeJSON(g.stdout, map[string]any{"id": s.ID(), "ttl_ms": s.TTL().Milliseconds()})
				}
				_, err = fmt.Fprintln(g.stdout, s.ID())
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "time to live")
	cmd.Flags().StringVar(&name, "name", "cli", "label shown by concord session ls")
	return cmd
}

func sessionKeepAlive(g *globals) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keepalive ID",
		Short: "Keep a session alive until interrupted (or once with --once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return g.withClient(cmd, !once, func(ctx context.Context, cl *client.Client) error {
				for {
					cctx, cancel := context.WithTimeout(ctx, g.timeout)
					ttl, err := cl.KeepAliveOnce(cctx, id)
					cancel()
					if err != nil {
						return err
					}
					if g.json {
						_ = writeJSON(g.stdout, map[string]any{"id": id, "ttl_ms": ttl.Milliseconds()})
					} else {
						fmt.Fprintf(g.stdout, "session %d kept alive, ttl %s\n", id, ttl)
					}
					if once {
						return nil
					}
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(max(ttl/3, 100*time.Millisecond)):
					}
				}
			})
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "send one keep-alive and exit")
	return cmd
}

func sessionRevoke(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "End a session and delete what is bound to it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				n, err := cl.RevokeSession(ctx, id)
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]any{"id": id, "keys_deleted": n})
				}
				_, err = fmt.Fprintf(g.stdout, "revoked session %d; %d keys, locks and leases ended with it\n", id, n)
				return err
			})
		},
	}
}

func sessionLs(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List sessions",
		Long: "List sessions, a page (1,000 sessions) at a time as they are read: the table in fixed-width columns\n" +
			"under one header, --json a JSON array written element by element.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				var (
					after int64
					n     int
				)
				for {
					page, more, err := cl.ListSessionsPage(ctx, after, 0)
					if err != nil {
						return err
					}
					for _, s := range page {
						if err := printSession(g, s, n); err != nil {
							return err
						}
						n++
					}
					if !more || len(page) == 0 {
						break
					}
					after = page[len(page)-1].GetId()
				}
				return endSessions(g, n)
			})
		},
	}
}

// sessionColumns lays out `session ls`'s table: it is printed a page at a
// time, so its columns cannot be sized to the whole list.
const sessionColumns = "%-12s  %-24s  %-10s  %-12s  %-6s  %s\n"

// printSession prints the i-th session of `session ls`: the header (or the
// JSON array's opening) before the first.
func printSession(g *globals, s *client.SessionInfo, i int) error {
	if g.json {
		b, err := json.MarshalIndent(map[string]any{"id": s.GetId(), "name": s.GetName(), "ttl_ms": s.GetTtlMs(),
			"remaining_ms": s.GetRemainingMs(), "keys": s.GetKeys(), "created_unix_ms": s.GetCreatedUnixMs()}, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if i == 0 {
			sep = "[\n  "
		}
		_, err = fmt.Fprintf(g.stdout, "%s%s", sep, b)
		return err
	}
	if i == 0 {
		if _, err := fmt.Fprintf(g.stdout, sessionColumns, "ID", "NAME", "TTL", "REMAINING", "KEYS", "CREATED"); err != nil {
			return err
		}
	}
	rem := "-"
	if s.GetRemainingMs() >= 0 {
		rem = (time.Duration(s.GetRemainingMs()) * time.Millisecond).String()
	}
	_, err := fmt.Fprintf(g.stdout, sessionColumns, strconv.FormatInt(s.GetId(), 10), display(s.GetName()),
		time.Duration(s.GetTtlMs())*time.Millisecond, rem, strconv.FormatInt(s.GetKeys(), 10),
		time.UnixMilli(s.GetCreatedUnixMs()).UTC().Format(time.RFC3339))
	return err
}

// endSessions ends `session ls`'s output of n sessions.
func endSessions(g *globals, n int) error {
	var err error
	switch {
	case g.json && n == 0:
		_, err = fmt.Fprintln(g.stdout, "[]")
	case g.json:
		_, err = fmt.Fprintln(g.stdout, "\n]")
	case n == 0:
		_, err = fmt.Fprintf(g.stdout, sessionColumns, "ID", "NAME", "TTL", "REMAINING", "KEYS", "CREATED")
	}
	return err
}
