package client

import (
	"context"
	"errors"
	"slices"
	"testing"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

func testGrant(token uint64, owner, name string) *Grant {
	g := &Grant{Token: token, owner: owner, Names: []string{name}}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	return g
}

func heldKeys(s *Session) []string {
	var out []string
	for _, chunk := range s.held() {
		for _, h := range chunk {
			out = append(out, h.GetOwner()+"/"+string(rune('0'+h.GetToken())))
		}
	}
	slices.Sort(out)
	return out
}

// Grants made by one command share a token: the session tracks each, with
// its owner, and a loss reaches the owner's grant alone.
func TestSessionTracksGrantsSharingAToken(t *testing.T) {
	s := &Session{}
	a, b, b2, c, d := testGrant(7, "a", "rw"), testGrant(7, "b", "rw"), testGrant(7, "b", "rw"), testGrant(9, "c", "m"), testGrant(7, "d", "x")
	for _, g := range []*Grant{a, b, b2, c, d} {
		s.track(g)
	}
	s.untrack(a)
	if got, want := heldKeys(s), []string{"b/7", "c/9", "d/7"}; !slices.Equal(got, want) {
		t.Fatalf("held: got %v, want %v (one entry per owner and token)", got, want)
	}
	s.grantsLost([]*concordv1.LostGrant{{Token: 7, Owner: "b", Reason: "force-released: test"}})
	if a.Err() != nil {
		t.Fatalf("an untracked grant was told of a loss: %v", a.Err())
	}
	for _, g := range []*Grant{b, b2} {
		if !errors.Is(g.Err(), ErrLockLost) {
			t.Fatalf("owner b's grant with token 7: got %v, want ErrLockLost", g.Err())
		}
	}
	if d.Err() != nil || c.Err() != nil {
		t.Fatalf("grants of other owners were told of b's loss: %v, %v", d.Err(), c.Err())
	}
	if got, want := heldKeys(s), []string{"c/9", "d/7"}; !slices.Equal(got, want) {
		t.Fatalf("held after the loss: got %v, want %v", got, want)
	}
	// A server that judges tokens alone names no owner: every grant with
	// the token is told.
	s.grantsLost([]*concordv1.LostGrant{{Token: 7, Reason: "force-released: test"}})
	if !errors.Is(d.Err(), ErrLockLost) || c.Err() != nil {
		t.Fatalf("a loss by token alone: d %v, c %v", d.Err(), c.Err())
	}
}

// A session holding more grants than one keep-alive carries sends them in
// several, every round: each grant is judged within one keep-alive
// interval. One keep-alive used to carry 1,024 picked in map order, and a
// force-released grant among 2,300 could go unreported for several rounds.
func TestHeldGrantsAreAllCarriedEveryRound(t *testing.T) {
	s := &Session{}
	const n = 2*maxJudgedGrants + 300
	for i := range n {
		s.track(testGrant(uint64(i+1), "o", "sem"))
	}
	chunks := s.held()
	if len(chunks) != 3 {
		t.Fatalf("%d grants in %d keep-alives, want 3", n, len(chunks))
	}
	seen := map[uint64]bool{}
	for _, c := range chunks {
		if len(c) > maxJudgedGrants {
			t.Fatalf("a keep-alive carries %d grants, more than %d", len(c), maxJudgedGrants)
		}
		for _, h := range c {
			seen[h.GetToken()] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d grants carried", len(seen), n)
	}
}

// A keep-alive's answer naming a lost grant may arrive after the session
// ended (Close, Orphan, its deadline): nothing is left to judge. It used to
// assign into the map end had cleared, and the keep-alive goroutine panicked.
func TestLostGrantsAfterTheSessionEnded(t *testing.T) {
	s := &Session{done: make(chan struct{})}
	g := testGrant(7, "a", "m")
	g.sess = s
	s.track(g)
	s.end(errors.New("test: session over"))
	s.grantsLost([]*concordv1.LostGrant{{Token: 7, Owner: "a", Reason: "force-released: test"}})
	if !errors.Is(g.Err(), ErrLockLost) {
		t.Fatalf("the grant of an ended session: %v, want ErrLockLost", g.Err())
	}
}
