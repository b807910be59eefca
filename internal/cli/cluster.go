package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/durable"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect and change the cluster"}
	cmd.AddCommand(clusterStatus(g), clusterMembers(g), clusterAdd(g), clusterUpdatePeer(g), clusterRemove(g), clusterTransfer(g), clusterSnapshot(g))
	return cmd
}

func clusterStatus(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the leader, the members and each endpoint's progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withAnyMember(cmd, func(ctx context.Context, cl *client.Client) error {
				st, err := cl.Status(ctx)
				if err != nil {
					return err
				}
				if g.json {
					return writeProtoJSON(g.stdout, st)
				}
				leader := st.GetLeader()
				if leader == "" {
					leader = "(none)"
				}
				clusterID := st.GetClusterId()
				if clusterID == "" {
					clusterID = "(not set yet)"
				}
				fmt.Fprintf(g.stdout, "leader: %s  term: %d  keys: %d  sessions: %d  state bytes: %d  rules version: %d  cluster ID: %s\n\n",
					leader, st.GetTerm(), st.GetKeys(), st.GetSessions(), st.GetStateBytes(), st.GetRulesVersion(), clusterID)
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ENDPOINT\tMEMBER\tSTATE\tTERM\tCOMMIT\tAPPLIED\tSNAPSHOT")
				for _, ep := range cl.Endpoints() {
					s, err := cl.StatusOf(ctx, ep)
					if err != nil {
						fmt.Fprintf(tw, "%s\t-\tunreachable: %v\t\t\t\t\n", ep, err)
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", ep, s.GetSelf().GetName(), s.GetState(), s.GetTerm(),
						s.GetCommitIndex(), s.GetAppliedIndex(), s.GetLastSnapshotIndex())
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintln(g.stdout)
				return printMembers(g, st.GetMembers())
			})
		},
	}
}

func printMembers(g *globals, members []*client.Member) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tROLE\tPEER\tCLIENT")
	for _, m := range members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.GetName(), m.GetId(), m.GetRole(), m.GetPeerAddr(), m.GetClientAddr())
	}
	return tw.Flush()
}

func clusterMembers(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withAnyMember(cmd, func(ctx context.Context, cl *client.Client) error {
				st, err := cl.Status(ctx)
				if err != nil {
					return err
				}
				if g.json {
					out := make([]map[string]string, 0, len(st.GetMembers()))
					for _, m := range st.GetMembers() {
						out = append(out, map[string]string{"id": m.GetId(), "name": m.GetName(), "role": m.GetRole(),
							"peer_addr": m.GetPeerAddr(), "client_addr": m.GetClientAddr()})
					}
					return writeJSON(g.stdout, out)
				}
				return printMembers(g, st.GetMembers())
			})
		},
	}
}

func clusterAdd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME PEER_ADDR",
		Short: "Add a member as a learner (promoted to voter once caught up)",
		Long: `Add a member. It joins as a learner (a non-voter) and the leader promotes it
once it has caught up. Then start it, with an empty DATA_DIR and its own
CLIENT_ADDR, with:

  concord server --name NAME --data-dir DATA_DIR --listen-peer PEER_ADDR \
    --listen-client CLIENT_ADDR --join <any member's client address>`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				m, err := cl.AddMember(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				if g.json {
					return writeProtoJSON(g.stdout, m)
				}
				join := cleanEndpoints(g.endpoints)[0] // with its https://, if any
				if g.cacert != "" {
					// The joiner verifies the cluster with the same private
					// CA (and asks a host:port endpoint over TLS with it).
					join += " --join-cacert " + g.cacert
				}
				fmt.Fprintf(g.stdout, "added %s (id %s) as a learner at %s\n"+
					"start it with: concord server --name %s --data-dir DATA_DIR --listen-peer %s --listen-client CLIENT_ADDR --join %s\n",
					m.GetName(), m.GetId(), m.GetPeerAddr(), m.GetName(), m.GetPeerAddr(), join)
				return nil
			})
		},
	}
}

func clusterUpdatePeer(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "update-peer NAME PEER_ADDR",
		Short: "Move a member to a new peer address (keeps its ID and data)",
		Long: `Move a member to a new peer address, keeping its ID, its role and its data.
Stop the member first, run this, then start it on its data dir with the new
address:

  concord server --name NAME --data-dir DATA_DIR --listen-peer PEER_ADDR ...

The leader cannot be moved: run concord cluster transfer-leader first.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				m, err := cl.UpdateMember(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				if g.json {
					return writeProtoJSON(g.stdout, m)
				}
				_, err = fmt.Fprintf(g.stdout, "moved %s (id %s) to %s\nstart it with --advertise-peer %s (and --listen-peer) on its data dir\n",
					m.GetName(), m.GetId(), m.GetPeerAddr(), m.GetPeerAddr())
				return err
			})
		},
	}
}

func clusterRemove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a member (its ID is never reused)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				if err := cl.RemoveMember(ctx, args[0]); err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]string{"removed": args[0]})
				}
				_, err := fmt.Fprintf(g.stdout, "removed %s\n", args[0])
				return err
			})
		},
	}
}

func clusterTransfer(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [NAME]",
		Short: "Hand leadership to a member (or let Raft choose)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				leader, err := cl.TransferLeader(ctx, name)
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]string{"leader": leader})
				}
				_, err = fmt.Fprintf(g.stdout, "leader is now %s\n", leader)
				return err
			})
		},
	}
}

func clusterSnapshot(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up the state machine"}
	cmd.AddCommand(&cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent backup to FILE (restore with `concord snapshot restore`)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, true, func(ctx context.Context, cl *client.Client) error {
				tmp := args[0] + ".part"
				f, err := os.Create(tmp)
				if err != nil {
					return err
				}
				// The backup is synced before it takes its name and the
				// directory after: "saved" means a crash cannot leave a
				// short or empty FILE.
				idx, err := cl.Snapshot(ctx, f)
				if err == nil {
					err = f.Sync()
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err == nil {
					err = os.Rename(tmp, args[0])
				}
				if err != nil {
					os.Remove(tmp)
					return err
				}
				if err := durable.SyncDir(filepath.Dir(args[0])); err != nil {
					return err
				}
				abs, _ := filepath.Abs(args[0])
				if g.json {
					return writeJSON(g.stdout, map[string]any{"file": abs, "revision": idx})
				}
				_, err = fmt.Fprintf(g.stdout, "saved snapshot at revision %d to %s\n", idx, abs)
				return err
			})
		},
	})
	return cmd
}
