package lock

import (
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// ClaimsFromProto converts API claims.
func ClaimsFromProto(cs []*concordv1.LockClaim) []Claim {
	out := make([]Claim, 0, len(cs))
	for _, c := range cs {
		out = append(out, Claim{Name: c.GetName(), Kind: Kind(c.GetKind()), Mode: Mode(c.GetMode()), Permits: c.GetPermits(), Capacity: c.GetCapacity()})
	}
	return out
}

// StateProto converts an outcome's state.
func StateProto(s State) concordv1.AcquireState {
	switch s {
	case Granted:
		return concordv1.AcquireState_ACQUIRE_STATE_GRANTED
	case Queued:
		return concordv1.AcquireState_ACQUIRE_STATE_QUEUED
	case NotAcquired:
		return concordv1.AcquireState_ACQUIRE_STATE_NOT_ACQUIRED
	case Lost:
		return concordv1.AcquireState_ACQUIRE_STATE_LOST
	}
	return concordv1.AcquireState_ACQUIRE_STATE_UNSPECIFIED
}

// InfoProto describes a lock for the API; sessionName labels holders and
// waiters.
func InfoProto(l Lock, waiters []Waiter, sessionName func(int64) string) *concordv1.LockInfo {
	info := &concordv1.LockInfo{Name: l.Name, Kind: concordv1.LockKind(l.Kind), Capacity: l.Capacity}
	for _, h := range l.Holders {
		info.Holders = append(info.Holders, &concordv1.LockHolder{
			Session: h.Session, SessionName: sessionName(h.Session), Owner: h.Owner, Token: h.Token,
			Mode: concordv1.LockMode(h.Mode), Permits: h.Permits, HeldSinceUnixMs: h.SinceUnixMs, HoldMs: h.HoldMs,
		})
	}
	for _, w := range waiters {
		pw := &concordv1.LockWaiter{Id: w.ID, Session: w.Session, SessionName: sessionName(w.Session), Owner: w.Owner, SinceUnixMs: w.SinceUnixMs}
		for _, c := range w.Claims {
			pw.Locks = append(pw.Locks, c.Name)
			if c.Name == l.Name {
				pw.Mode, pw.Permits = concordv1.LockMode(c.Mode), c.Permits
			}
		}
		info.Waiters = append(info.Waiters, pw)
	}
	return info
}

// ForceProto converts force-release records.
func ForceProto(recs []ForceRecord) []*concordv1.ForceReleaseRecord {
	out := make([]*concordv1.ForceReleaseRecord, 0, len(recs))
	for _, f := range recs {
		out = append(out, &concordv1.ForceReleaseRecord{Name: f.Name, Token: f.Token, Session: f.Session, Owner: f.Owner,
			AtUnixMs: f.AtUnixMs, Reason: f.Reason, Revision: f.Revision, HeldSinceUnixMs: f.HeldSince, ByClient: f.ByClient})
	}
	return out
}
