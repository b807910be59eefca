package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/server"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Offline snapshot tools"}
	var (
		dataDir, name, initialCluster, advertisePeer, logStore string
	)
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Seed a new member's data dir from a backup (run once per member, then start them)",
		Long: `Restore a backup made with "concord cluster snapshot save" into a new cluster.
Run it for every member of the new cluster, with the same --initial-cluster,
then start each member with the same --name, --data-dir and --initial-cluster.

  concord snapshot restore backup.snap --name n1 --data-dir d1 \
    --initial-cluster n1=127.0.0.1:7081,n2=127.0.0.1:7082,n3=127.0.0.1:7083`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var fresh bytes.Buffer
			idx, err := fsm.ForNewCluster(bytes.NewReader(data), &fresh)
			if err != nil {
				return fmt.Errorf("%s is not a valid concord snapshot: %w", args[0], err)
			}
			peers, err := config.ParseInitialCluster(initialCluster)
			if err != nil {
				return err
			}
			// Check what `concord server` will check of the same flags,
			// before anything is written: a member listed twice, an
			// invalid name or address, a mistyped log store.
			cfg := config.Server{Name: name, DataDir: dataDir, InitialCluster: peers, Raft: config.Raft{LogStore: logStore}}
			// --advertise-peer serves a single-member restore; with
			// --initial-cluster, this member's entry gives it.
			self := advertisePeer
			if !cmd.Flags().Changed("advertise-peer") {
				for _, p := range peers {
					if p.Name == name {
						self = p.Addr
					}
				}
			}
			cfg.ListenPeer, cfg.AdvertisePeer = self, self
			cfg.SetDefaults()
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid restore:\n%w", err)
			}
			var servers []raftnode.Server
			for _, p := range cfg.InitialCluster {
				servers = append(servers, raftnode.Server{ID: p.Name, Addr: p.Addr, Voter: true})
			}
			if err := server.SeedMember(dataDir, name, func(raftDir string) error {
				return raftnode.SeedFromSnapshot(raftDir, logStore, idx, servers, &fresh, nil)
			}); err != nil {
				return err
			}
			if g.json {
				abs, _ := filepath.Abs(dataDir)
				return writeJSON(g.stdout, map[string]any{"revision": idx, "data_dir": abs, "name": name})
			}
			fmt.Fprintf(g.stdout, "restored revision %d into %s for member %s; start it with the same --name, --data-dir and --initial-cluster\n", idx, dataDir, name)
			return nil
		},
	}
	restore.Flags().StringVar(&dataDir, "data-dir", config.DefaultDataDir, "new, empty data dir of the member")
	restore.Flags().StringVar(&name, "name", config.DefaultName, "the member's name")
	restore.Flags().StringVar(&initialCluster, "initial-cluster", "", "members of the new cluster (default: this member alone)")
	restore.Flags().StringVar(&advertisePeer, "advertise-peer", config.DefaultPeerAddr, "the member's peer address, for a single-member restore")
	restore.Flags().StringVar(&logStore, "raft-log-store", "seglog", "the Raft log store the member will run with (seglog, bolt or wal)")
	cmd.AddCommand(restore)
	return cmd
}
