package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"connectrpc.com/connect"

	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// Seed identifies the state `concord snapshot restore` seeded a member
// with: the index it was seeded at and the SHA-256 of the snapshot written
// there (fsm.ForNewCluster's output, which is the same for the same backup
// and the same --bump-index and --bump-ids). The zero Seed is none.
type Seed struct {
	Index  uint64
	SHA256 string
}

// NewSeed returns the Seed of snapshot, the state seeded at index.
func NewSeed(index uint64, snapshot []byte) Seed {
	sum := sha256.Sum256(snapshot)
	return Seed{Index: index, SHA256: hex.EncodeToString(sum[:])}
}

// Digest returns the seed as members compare it, "index:sha256"; "" for
// the zero Seed.
func (s Seed) Digest() string {
	if s.SHA256 == "" {
		return ""
	}
	return fmt.Sprintf("%d:%s", s.Index, s.SHA256)
}

func validSHA256(h string) bool {
	b, err := hex.DecodeString(h)
	return err == nil && len(b) == sha256.Size && hex.EncodeToString(b) == h
}

// seedCheckRetry is how often the seed check asks voters that did not
// answer yet.
const seedCheckRetry = 500 * time.Millisecond

// checkSeed is the initial seed check (etcd's initial corruption check, for
// restored members). Members restored with different --bump-ids start at
// the same index with different segment tags and strict sequences, and Raft
// sees nothing wrong: they diverged silently. A member with a seed asks
// every other voter of its configuration for its seed from its start, until
// each has answered once: the same seed, or none (a member that joined
// later), confirms it; another seed stops this member with
// ErrSeedMismatch. Voters that do not answer are asked again every
// seedCheckRetry; the check holds up neither the start nor the stop.
func (s *Server) checkSeed() {
	mine := s.id.seed()
	if mine == "" {
		return
	}
	ctx, cancel := s.untilStop()
	defer cancel()
	s.log.Info("checking that every voter was seeded alike", "seed", mine)
	confirmed := map[string]bool{}
	waiting := map[string]bool{}
	for {
		servers, err := s.node.Configuration()
		if err == nil {
			pending, voters := 0, 0
			for _, sv := range servers {
				if !sv.Voter || sv.ID == s.id.ID {
					continue
				}
				voters++
				if confirmed[sv.ID] {
					continue
				}
				theirs, err := s.peerSeed(ctx, sv)
				if ctx.Err() != nil {
					return
				}
				switch {
				case err != nil:
					pending++
					if !waiting[sv.ID] {
						s.log.Info("seed check: waiting for a voter to answer", "voter", sv.ID, "addr", sv.Addr, "err", err)
						waiting[sv.ID] = true
					}
				case theirs != "" && theirs != mine:
					s.reportSeedMismatch(mine, theirs, sv)
					return
				default:
					confirmed[sv.ID] = true
					s.log.Debug("seed check: voter confirmed", "voter", sv.ID, "seed", theirs)
				}
			}
			if pending == 0 {
				s.log.Info("seed confirmed by every voter", "seed", mine, "voters", voters)
				return
			}
		}
		t := time.NewTimer(seedCheckRetry)
		select {
		case <-s.stopCh:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// peerSeed asks the voter sv for its seed.
func (s *Server) peerSeed(ctx context.Context, sv raftnode.Server) (string, error) {
	ns, err := s.nodeStatus(ctx, sv.ID, sv.Addr, &internalv1.NodeStatusRequest{})
	if err != nil {
		return "", err
	}
	return ns.GetSeed(), nil
}

// nodeStatus asks the member id at the peer address addr for its
// NodeStatus. An answer from another member than id (id moved, another
// took its address) is no answer.
func (s *Server) nodeStatus(ctx context.Context, id, addr string, req *internalv1.NodeStatusRequest) (*internalv1.NodeStatusResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := s.peers.For(addr).NodeStatus(cctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	if resp.Msg.GetId() != id {
		return nil, fmt.Errorf("member %q answers at %s", resp.Msg.GetId(), addr)
	}
	return resp.Msg, nil
}

// reportSeedMismatch stops the member, as reportRemoved does.
func (s *Server) reportSeedMismatch(mine, theirs string, sv raftnode.Server) {
	err := fmt.Errorf("%w: this member was seeded with %s and voter %s (%s) with %s (index:sha256): "+
		"the members were restored from different backups or with different --bump-index or --bump-ids, and would serve different states; "+
		"stop every member and restore each again, into an empty --data-dir, from the same backup with the same --bump-index and --bump-ids",
		ErrSeedMismatch, mine, sv.ID, sv.Addr, theirs)
	s.log.Error("member seeded unlike another voter", "err", err)
	if s.onFatal != nil {
		s.onFatal(err)
	}
}

// untilStop returns a context that ends when the server stops (or cancel
// is called), for the background checks that ask other members.
func (s *Server) untilStop() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
