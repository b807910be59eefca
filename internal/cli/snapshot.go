package cli

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/server"
)

// DefaultIndexBump is snapshot restore's default --bump-index: a billion
// entries, more than a cluster applies in a day at 10,000 writes a second,
// and far from the index's limit however often a cluster is restored.
const DefaultIndexBump = 1_000_000_000

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Offline snapshot tools"}
	var (
		dataDir, name, initialCluster, advertisePeer, logStore string
		bump                                                   uint64
		idBump                                                 int64
	)
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Seed a new member's data dir from a backup (run once per member, then start them)",
		Long: `Restore a backup made with "concord cluster snapshot save" into a new cluster.
Run it for every member of the new cluster, with the same --initial-cluster,
then start each member with the same --name, --data-dir and --initial-cluster,
and with --listen-peer at its address in --initial-cluster (for a single
member restored without --initial-cluster, its --advertise-peer): the
restored cluster reaches each member there. The restore prints the command.

  concord snapshot restore backup.snap --name n1 --data-dir d1 \
    --initial-cluster n1=127.0.0.1:7081,n2=127.0.0.1:7082,n3=127.0.0.1:7083

The new cluster's index starts --bump-index (default 1,000,000,000) past the
backup's: the old cluster went on after the backup, and its lock holders'
fencing tokens and its watchers' revisions must stay below the new
cluster's. Segment tags and strict sequences have the same problem and no
safe default: when the backup holds any, --bump-ids N is required, and
moves each N past the backup's value. Give every member the same flags:
each records the digest of the state it was seeded with, and a member that
finds a voter seeded with another state stops at start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var fresh bytes.Buffer
			if bump > fsm.MaxIndexBump || idBump < 0 {
				return fmt.Errorf("--bump-index must be within [0, %d] and --bump-ids at least 0", uint64(fsm.MaxIndexBump))
			}
			sum, err := fsm.ForNewCluster(bytes.NewReader(data), &fresh, fsm.NewClusterOptions{IndexBump: bump, IDBump: idBump})
			if errors.Is(err, fsm.ErrIndexBump) {
				return fmt.Errorf("cannot restore %s with --bump-index %d: %w; --bump-index 0 restores it at its own index", args[0], bump, err)
			}
			if err != nil {
				return fmt.Errorf("%s is not a valid concord snapshot: %w", args[0], err)
			}
			idx := sum.Index
			if sum.Tags+sum.Sequences > 0 && !cmd.Flags().Changed("bump-ids") {
				// No default is safe: how far the old cluster went after
				// the backup is known only to whoever ran it.
				return fmt.Errorf("the backup holds %d segment tags and %d strict sequences, and the old cluster may have handed out values of them after the backup, which the restored cluster would hand out again: "+
					"pass --bump-ids N to move each N past the backup's value (above what the old cluster handed out since; `concord id tags` on it shows where each tag stands), "+
					"or --bump-ids 0 if it handed out none", sum.Tags, sum.Sequences)
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
			// The seed's digest, taken before the seed consumes fresh:
			// members restored with the same backup and flags record the
			// same, and each checks the others' at start.
			seed := server.NewSeed(idx, fresh.Bytes())
			if err := server.SeedMember(dataDir, name, seed, func(raftDir string) error {
				// Raft's snapshot store logs each snapshot it creates at
				// info: only its warnings and errors concern the user of
				// this command, whose answer is its output.
				logger := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
				return raftnode.SeedFromSnapshot(raftDir, logStore, idx, servers, &fresh, logger)
			}); err != nil {
				return err
			}
			if g.json {
				abs, _ := filepath.Abs(dataDir)
				return writeJSON(g.stdout, map[string]any{"revision": idx, "bump_index": bump, "bump_ids": idBump, "tags": sum.Tags, "sequences": sum.Sequences, "data_dir": abs, "name": name, "seed": seed.Digest(),
					"start_command": restoredStartCommand(name, dataDir, self, initialCluster)})
			}
			moved := ""
			if sum.Tags+sum.Sequences > 0 {
				moved = fmt.Sprintf(", with its %d segment tags and %d strict sequences moved --bump-ids %d past the backup's values", sum.Tags, sum.Sequences, idBump)
			}
			fmt.Fprintf(g.stdout, "restored the backup into %s for member %s at revision %d (the backup's, plus --bump-index %d)%s; its seed is %s (every member restored with the same backup and flags has the same)\n", dataDir, name, idx, bump, moved, seed.Digest())
			fmt.Fprintf(g.stdout, "start it with: %s\n", restoredStartCommand(name, dataDir, self, initialCluster))
			if _, port, err := net.SplitHostPort(self); err == nil {
				fmt.Fprintf(g.stdout, "  (add --listen-client and the other flags it runs with; to take peers on every interface, "+
					"give --listen-peer %s --advertise-peer %s instead)\n", net.JoinHostPort("0.0.0.0", port), self)
			}
			return nil
		},
	}
	restore.Flags().StringVar(&dataDir, "data-dir", config.DefaultDataDir, "new, empty data dir of the member")
	restore.Flags().StringVar(&name, "name", config.DefaultName, "the member's name")
	restore.Flags().StringVar(&initialCluster, "initial-cluster", "", "members of the new cluster (default: this member alone)")
	restore.Flags().StringVar(&advertisePeer, "advertise-peer", config.DefaultPeerAddr, "the member's peer address, for a single-member restore")
	restore.Flags().StringVar(&logStore, "raft-log-store", "seglog", "the Raft log store the member will run with (seglog, bolt or wal)")
	restore.Flags().Uint64Var(&bump, "bump-index", DefaultIndexBump,
		"start the new cluster's index (revisions, lock tokens) this far past the backup's, above what the old cluster handed out after it; the same on every member; 0 keeps the backup's")
	restore.Flags().Int64Var(&idBump, "bump-ids", 0,
		"move every segment tag and strict sequence this far past the backup's value (required when the backup holds any; the same on every member)")
	cmd.AddCommand(restore)
	return cmd
}

// restoredStartCommand returns the `concord server` command that starts a
// member restored by `concord snapshot restore`: its name and data dir,
// --listen-peer at the peer address the restored cluster configuration
// gives it (peer, which --advertise-peer defaults to: a member that
// listened elsewhere left the configured address unserved, and warned that
// the cluster reaches it at another address), and the --initial-cluster it
// was restored with, which `concord server` checks again at every start.
func restoredStartCommand(name, dataDir, peer, initialCluster string) string {
	args := []string{"concord", "server", "--name", name, "--data-dir", dataDir, "--listen-peer", peer}
	if initialCluster != "" {
		args = append(args, "--initial-cluster", initialCluster)
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters no shell treats specially.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
