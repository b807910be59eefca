package client

import (
	"context"
	"errors"
	"testing"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

func testGrant(token uint64, name string) *Grant {
	g := &Grant{Token: token, Names: []string{name}}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	return g
}

// Grants made by one command share a token: the session tracks each, and a
// loss of the token reaches every one still tracked.
func TestSessionTracksGrantsSharingAToken(t *testing.T) {
	s := &Session{}
	a, b, c := testGrant(7, "rw"), testGrant(7, "rw"), testGrant(9, "m")
	s.track(a)
	s.track(b)
	s.track(c)
	s.untrack(a)
	if got := len(s.heldTokens()); got != 2 {
		t.Fatalf("held tokens: got %d, want 2 (7 and 9)", got)
	}
	s.grantsLost([]*concordv1.LostGrant{{Token: 7, Reason: "force-released: test"}})
	if a.Err() != nil {
		t.Fatalf("an untracked grant was told of a loss: %v", a.Err())
	}
	if !errors.Is(b.Err(), ErrLockLost) {
		t.Fatalf("the tracked grant sharing token 7: got %v, want ErrLockLost", b.Err())
	}
	if c.Err() != nil {
		t.Fatalf("token 9 was not lost: %v", c.Err())
	}
	if toks := s.heldTokens(); len(toks) != 1 || toks[0] != 9 {
		t.Fatalf("held tokens after the loss: %v, want [9]", toks)
	}
}
