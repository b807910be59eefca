package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/durable"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/raftnode"
)

// identity is what a member keeps about itself across restarts.
type identity struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// SeedSHA256 and SeedIndex are the Seed of a member that `concord
	// snapshot restore` seeded; a member of a new cluster, one that joined
	// and one seeded before the seed was recorded have none, and check
	// nothing (seedcheck.go).
	SeedSHA256 string `json:"seed_sha256,omitempty"`
	SeedIndex  uint64 `json:"seed_index,omitempty"`
	// ClusterID is the cluster ID the member applied, stored once it has
	// (keepClusterID), so that a restarted member names it, and refuses
	// another cluster's Raft streams, before it applies its log again.
	ClusterID string `json:"cluster_id,omitempty"`
}

// seed returns the digest of the member's seed, "" when it has none.
func (id identity) seed() string {
	return Seed{Index: id.SeedIndex, SHA256: id.SeedSHA256}.Digest()
}

const identityFile = "member.json"

func loadIdentity(dir string) (identity, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil || id.ID == "" {
		return identity{}, false, fmt.Errorf("%s is corrupt: %v", filepath.Join(dir, identityFile), err)
	}
	if id.SeedSHA256 != "" && !validSHA256(id.SeedSHA256) {
		return identity{}, false, fmt.Errorf("%s is corrupt: seed_sha256 %q is not a hex SHA-256", filepath.Join(dir, identityFile), id.SeedSHA256)
	}
	if id.ClusterID != "" && !fsm.ValidClusterID(id.ClusterID) {
		return identity{}, false, fmt.Errorf("%s is corrupt: cluster_id %q is not a cluster ID", filepath.Join(dir, identityFile), id.ClusterID)
	}
	return id, true, nil
}

// saveIdentity writes member.json durably: the file is synced before it
// replaces the old one and the directory after, so a crash leaves either
// no identity or the whole one, never an empty file under the final name.
func saveIdentity(dir string, id identity) error {
	b, _ := json.Marshal(id)
	tmp := filepath.Join(dir, identityFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, identityFile)); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// resolveIdentity decides this member's Raft ID and, for a new cluster, the
// bootstrap configuration. A restarted member keeps its stored ID. A member
// of a new cluster takes its name as ID. A member joining an existing
// cluster learns the ID that `concord cluster add` assigned to its name.
//
// fresh reports an identity that is not stored yet (a member of a new
// cluster): the caller saves it once Raft has opened and bootstrapped. Saving it
// before let a start that failed in between leave member.json without Raft
// state, and the next start, finding member.json, took the member for a
// restarted one, skipped the bootstrap and never elected a leader. The
// bootstrap is not re-derived for a data dir with member.json: a member
// that joined and restarts without flags would bootstrap a cluster of its
// own.
func (s *Server) resolveIdentity(ctx context.Context) (id identity, boot []raftnode.Server, fresh bool, err error) {
	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return identity{}, nil, false, fmt.Errorf("data dir: %w", err)
	}
	id, ok, err := loadIdentity(s.cfg.DataDir)
	if err != nil {
		return identity{}, nil, false, err
	}
	if ok {
		if id.Name != s.cfg.Name {
			return identity{}, nil, false, fmt.Errorf("data dir %s belongs to member %q, not %q", s.cfg.DataDir, id.Name, s.cfg.Name)
		}
		return id, nil, false, nil
	}
	if len(s.cfg.Join) > 0 {
		id, err := s.discoverID(ctx)
		if err != nil {
			return identity{}, nil, false, err
		}
		// A joining member stores its ID before Raft opens: it never
		// bootstraps, so a failed start leaves nothing a retry would
		// skip, while an ID stored after Raft opened (the leader reaches
		// it at once, and its Raft state exists) would be lost to a crash
		// in between, and the restart, without --join, would take its
		// bare name as ID and never be promoted.
		if err := saveIdentity(s.cfg.DataDir, id); err != nil {
			return identity{}, nil, false, fmt.Errorf("saving the member's identity: %w", err)
		}
		return id, nil, false, nil
	}
	id = identity{ID: s.cfg.Name, Name: s.cfg.Name}
	for _, p := range s.cfg.InitialCluster {
		boot = append(boot, raftnode.Server{ID: p.Name, Addr: p.Addr, Voter: true})
	}
	return id, boot, true, nil
}

// discoverID asks the cluster at the --join endpoints for the ID assigned to
// this member's name, waiting until `concord cluster add` has run. Only the
// leader's answer counts: a member that lags behind (or sits in a minority)
// may still list a retired ID under this name, and a member that started
// with it would never be promoted. A follower's answer points at the
// leader's client address, which is asked next.
func (s *Server) discoverID(ctx context.Context) (identity, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	hc, err := s.joinHTTPClient()
	if err != nil {
		return identity{}, err
	}
	tlsOn := s.cfg.JoinCACertFile != ""
	logged := false
	for {
		candidates := make([]string, 0, len(s.cfg.Join))
		for _, ep := range s.cfg.Join {
			candidates = append(candidates, endpointURL(ep, tlsOn))
		}
		for i := 0; i < len(candidates) && i < 16; i++ {
			st, err := s.askStatus(ctx, hc, candidates[i])
			if err != nil {
				if !logged {
					s.log.Debug("join endpoint did not answer", "endpoint", candidates[i], "err", err)
				}
				continue
			}
			if st.GetSelf().GetRole() != "leader" {
				// Members advertise host:port; the leader serves its
				// client API as the member that answered does (TLS on
				// every member or on none), so it is asked the same way.
				// It was asked over plain HTTP, and never answered, when
				// the cluster served TLS.
				https := strings.HasPrefix(candidates[i], "https://")
				for _, m := range st.GetMembers() {
					if m.GetRole() == "leader" && m.GetClientAddr() != "" {
						candidates = append(candidates, endpointURL(m.GetClientAddr(), https))
					}
				}
				continue
			}
			for _, m := range st.GetMembers() {
				if m.GetName() == s.cfg.Name && m.GetPeerAddr() == s.cfg.AdvertisePeer {
					return identity{ID: m.GetId(), Name: s.cfg.Name}, nil
				}
			}
		}
		if !logged {
			s.log.Info("waiting to be added to the cluster", "name", s.cfg.Name, "peer", s.cfg.AdvertisePeer,
				"hint", s.joinHint())
			logged = true
		}
		select {
		case <-ctx.Done():
			return identity{}, fmt.Errorf("joining %v: %w", s.cfg.Join, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// joinHint is the command that adds this member, as the waiting joiner logs
// it.
func (s *Server) joinHint() string {
	h := fmt.Sprintf("run: concord cluster add %s %s --endpoints %s", s.cfg.Name, s.cfg.AdvertisePeer, s.cfg.Join[0])
	if s.cfg.JoinCACertFile != "" {
		h += " --cacert " + s.cfg.JoinCACertFile
	}
	return h
}

// joinHTTPClient asks the Join endpoints, verifying their certificates
// with --join-cacert when it is given.
func (s *Server) joinHTTPClient() (*http.Client, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	if s.cfg.JoinCACertFile == "" {
		return hc, nil
	}
	pool, err := config.LoadCAPool(s.cfg.JoinCACertFile)
	if err != nil {
		return nil, fmt.Errorf("--join-cacert: %w", err)
	}
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return hc, nil
}

func (s *Server) askStatus(ctx context.Context, hc *http.Client, url string) (*concordv1.StatusResponse, error) {
	c := concordv1connect.NewClusterClient(hc, url)
	req := connect.NewRequest(&concordv1.StatusRequest{})
	if s.cfg.AuthToken != "" {
		req.Header().Set("Authorization", "Bearer "+s.cfg.AuthToken)
	}
	resp, err := c.Status(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// endpointURL turns host:port into an http URL, or an https one when tlsOn;
// URLs pass through.
func endpointURL(ep string, tlsOn bool) string {
	if strings.HasPrefix(ep, "http://") || strings.HasPrefix(ep, "https://") {
		return ep
	}
	if tlsOn {
		return "https://" + ep
	}
	return "http://" + ep
}

// SeedMember prepares the data dir of a member of a new cluster restored
// from a backup: seedRaft fills the Raft dir (dataDir/raft), then the
// identity is stored with seed (NewSeed of the state seedRaft seeds), which
// the member checks against the other voters' at every start: members
// seeded with different states stop with ErrSeedMismatch. A zero seed
// records none. The data dir must be new. Storing the identity first let a
// seed that failed (a mistyped log store, a full disk) leave a data
// dir that the corrected command refused as taken and `concord server`
// took for a restarted member, never bootstrapping it; now whatever a
// failed seed created is removed, so the command can be run again.
func SeedMember(dataDir, name string, seed Seed, seedRaft func(raftDir string) error) error {
	if seed.SHA256 != "" && !validSHA256(seed.SHA256) {
		return fmt.Errorf("seed %q is not a hex SHA-256", seed.SHA256)
	}
	if _, ok, err := loadIdentity(dataDir); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s already belongs to a member; restore into a new data dir", dataDir)
	}
	raftDir := filepath.Join(dataDir, "raft")
	remove := ""
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		remove = dataDir
	} else if _, err := os.Stat(raftDir); errors.Is(err, os.ErrNotExist) {
		remove = raftDir
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return err
	}
	err := seedRaft(raftDir)
	if err == nil {
		err = saveIdentity(dataDir, identity{ID: name, Name: name, SeedSHA256: seed.SHA256, SeedIndex: seed.Index})
	}
	if err != nil && remove != "" {
		if rerr := os.RemoveAll(remove); rerr != nil {
			return errors.Join(err, fmt.Errorf("cleaning up after the failed restore: %w", rerr))
		}
	}
	return err
}

// dataDirLock holds an exclusive lock on a data dir for the life of the
// member, so that a second member started on the same dir fails at once.
type dataDirLock struct{ f *os.File }

func lockDataDir(dir string) (*dataDirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another concord member (%v)", dir, err)
	}
	return &dataDirLock{f: f}, nil
}

func (l *dataDirLock) release() {
	if l == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
}
