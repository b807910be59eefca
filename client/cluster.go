package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// Member describes a cluster member.
type Member = concordv1.Member

// Status is a member's view of the cluster.
type Status = concordv1.StatusResponse

// Status asks the cluster (any member) for its status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.StatusResponse], error) {
		return ep.cluster.Status(ctx, connect.NewRequest(&concordv1.StatusRequest{}))
	})
	return resp, err
}

// StatusOf asks one endpoint, without failover, for its status.
func (c *Client) StatusOf(ctx context.Context, endpoint string) (*Status, error) {
	for _, ep := range c.endpoints {
		if ep.addr == endpoint {
			r, err := ep.cluster.Status(ctx, connect.NewRequest(&concordv1.StatusRequest{}))
			if err != nil {
				return nil, fromWire(err)
			}
			return r.Msg, nil
		}
	}
	return nil, fmt.Errorf("%w: %s is not one of the client's endpoints", ErrInvalidArgument, endpoint)
}

// Endpoints returns the client's endpoints as host:port.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, ep := range c.endpoints {
		out[i] = ep.addr
	}
	return out
}

// AddMember adds a member as a learner; the leader promotes it to voter once
// it has caught up. Start the new member with --join.
func (c *Client) AddMember(ctx context.Context, name, peerAddr string) (*Member, error) {
	resp, err := unaryCall(ctx, c, callOnce, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.AddMemberResponse], error) {
		return ep.cluster.AddMember(ctx, connect.NewRequest(&concordv1.AddMemberRequest{Name: name, PeerAddr: peerAddr}))
	})
	if err != nil {
		return nil, err
	}
	return resp.GetMember(), nil
}

// UpdateMember moves a member (by name or ID) to a new peer address,
// keeping its ID, role and data. Stop the member first, then start it on
// its data dir with the new --advertise-peer. The leader cannot be moved:
// transfer leadership first (ErrInvalidArgument). Moving a member to the
// address it has is a no-op, so the call can be repeated.
func (c *Client) UpdateMember(ctx context.Context, name, peerAddr string) (*Member, error) {
	resp, err := unaryCall(ctx, c, callOnce, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.UpdateMemberResponse], error) {
		return ep.cluster.UpdateMember(ctx, connect.NewRequest(&concordv1.UpdateMemberRequest{Name: name, PeerAddr: peerAddr}))
	})
	if err != nil {
		return nil, err
	}
	return resp.GetMember(), nil
}

// RemoveMember removes a member by name or ID. Its ID is never reused.
func (c *Client) RemoveMember(ctx context.Context, name string) error {
	return c.call(ctx, callOnce, func(ctx context.Context, ep *endpoint) error {
		_, err := ep.cluster.RemoveMember(ctx, connect.NewRequest(&concordv1.RemoveMemberRequest{Name: name}))
		return err
	})
}

// TransferLeader hands leadership to the named voter ("" lets Raft choose)
// and returns the new leader's ID.
func (c *Client) TransferLeader(ctx context.Context, name string) (string, error) {
	var leader string
	err := c.call(ctx, callOnce, func(ctx context.Context, ep *endpoint) error {
		r, err := ep.cluster.TransferLeader(ctx, connect.NewRequest(&concordv1.TransferLeaderRequest{Name: name}))
		if err != nil {
			return err
		}
		leader = r.Msg.GetLeader()
		return nil
	})
	return leader, err
}

// Hash asks one endpoint for its applied index and state machine hash.
func (c *Client) Hash(ctx context.Context, endpoint string) (uint64, string, error) {
	for _, ep := range c.endpoints {
		if ep.addr == endpoint {
			r, err := ep.cluster.Hash(ctx, connect.NewRequest(&concordv1.HashRequest{}))
			if err != nil {
				return 0, "", fromWire(err)
			}
			return r.Msg.GetAppliedIndex(), r.Msg.GetHash(), nil
		}
	}
	return 0, "", fmt.Errorf("%w: %s is not one of the client's endpoints", ErrInvalidArgument, endpoint)
}

// Snapshot writes a consistent backup of the state machine to w, checks its
// SHA-256, and returns the revision it reflects. Restore it with
// `concord snapshot restore`.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (uint64, error) {
	ep := c.pick()
	stream, err := ep.cluster.Snapshot(ctx, connect.NewRequest(&concordv1.SnapshotRequest{}))
	if err != nil {
		return 0, fromWire(err)
	}
	defer stream.Close()
	h := sha256.New()
	var index uint64
	var sum []byte
	for stream.Receive() {
		chunk := stream.Msg()
		if len(chunk.GetData()) > 0 {
			h.Write(chunk.GetData())
			if _, err := w.Write(chunk.GetData()); err != nil {
				return 0, err
			}
		}
		if len(chunk.GetSha256()) > 0 {
			sum = chunk.GetSha256()
			index = chunk.GetHeader().GetRevision()
		}
	}
	if err := stream.Err(); err != nil {
		return 0, fromWire(err)
	}
	if sum == nil {
		return 0, fmt.Errorf("%w: snapshot stream ended without its checksum", ErrUnavailable)
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return 0, fmt.Errorf("%w: snapshot checksum mismatch", ErrUnavailable)
	}
	return index, nil
}
