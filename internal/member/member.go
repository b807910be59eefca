// Package member is the state machine's registry of cluster members: the
// attributes each member publishes (name, peer and client addresses) and the
// IDs that were retired and must never be reused.
package member

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// ErrNotFound is returned for a member name or ID the cluster does not know.
var ErrNotFound = errs.New("MEMBER_NOT_FOUND", "member: not found")

// ErrExists is returned when adding a member whose name is taken by a live
// member.
var ErrExists = errs.New("MEMBER_EXISTS", "member: name already in use")

// Member is one member's attributes.
type Member struct {
	ID         string
	Name       string
	PeerAddr   string
	ClientAddr string
	Retired    bool
}

// SectionName names the registry's snapshot section.
const SectionName = "member"

// Registry holds every member ever published. Not safe for concurrent use.
type Registry struct {
	byID map[string]*Member
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{byID: map[string]*Member{}} }

// Publish records a member's attributes. A retired ID stays retired.
func (r *Registry) Publish(m Member) {
	if old, ok := r.byID[m.ID]; ok && old.Retired {
		return
	}
	m.Retired = false
	r.byID[m.ID] = &m
}

// Retire marks an ID as removed for good.
func (r *Registry) Retire(id string) {
	if m, ok := r.byID[id]; ok {
		m.Retired = true
		return
	}
	r.byID[id] = &Member{ID: id, Retired: true}
}

// Get returns a member by ID.
func (r *Registry) Get(id string) (Member, bool) {
	m, ok := r.byID[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Known reports whether an ID was ever used, live or retired.
func (r *Registry) Known(id string) bool { _, ok := r.byID[id]; return ok }

// List returns every member, retired ones included, ordered by ID.
func (r *Registry) List() []Member {
	out := make([]Member, 0, len(r.byID))
	for _, m := range r.byID {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Capture copies the registry for a snapshot.
func (r *Registry) Capture() (uint64, func(*record.Writer) error) {
	list := r.List()
	return uint64(len(list)), func(w *record.Writer) error {
		for _, m := range list {
			rec := &internalv1.MemberRecord{Id: m.ID, Name: m.Name, PeerAddr: m.PeerAddr, ClientAddr: m.ClientAddr, Retired: m.Retired}
			if err := w.Write(rec); err != nil {
				return err
			}
		}
		return nil
	}
}

// Restore replaces the registry with n records read from rd.
func (r *Registry) Restore(n uint64, rd *record.Reader) error {
	byID := make(map[string]*Member, min(n, record.MaxPrealloc))
	for i := uint64(0); i < n; i++ {
		var rec internalv1.MemberRecord
		if err := rd.Read(&rec); err != nil {
			return fmt.Errorf("member record %d: %w", i, err)
		}
		if rec.GetId() == "" || byID[rec.GetId()] != nil {
			return fmt.Errorf("%w: member ID %q is empty or twice", record.ErrCorrupt, rec.GetId())
		}
		byID[rec.GetId()] = &Member{ID: rec.GetId(), Name: rec.GetName(), PeerAddr: rec.GetPeerAddr(), ClientAddr: rec.GetClientAddr(), Retired: rec.GetRetired()}
	}
	r.byID = byID
	return nil
}
