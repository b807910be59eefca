package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// SessionInfo describes a session as the server sees it.
type SessionInfo = concordv1.SessionInfo

// SessionOption adjusts a new session.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	ttl  time.Duration
	name string
}

// WithTTL sets a session's time to live; default 10s. The SDK keeps the
// session alive every TTL/3.
func WithTTL(d time.Duration) SessionOption { return func(o *sessionOptions) { o.ttl = d } }

// WithName labels a session for people (shown by `concord session ls`).
func WithName(n string) SessionOption { return func(o *sessionOptions) { o.name = n } }

// Session is a lease kept alive in the background. Keys, locks and other
// holds bound to it end when it ends. Done is closed the moment the SDK can
// no longer be sure the session lives: when the server reports it expired,
// when a TTL (less a 0.5% margin for clock rates, see clockRateMargin) has
// passed since the send of the last keep-alive the leader confirmed, or
// when its client is closed (nothing keeps it alive then).
type Session struct {
	c   *Client
	id  int64
	ttl time.Duration

	mu       sync.Mutex
	deadline time.Time // leaseEnd(send time of the last confirmed keep-alive, TTL)
	// expiry fires at the deadline, whatever the keep-alive stream is doing
	// (open, broken, backing off, looking for the leader): see
	// checkDeadline.
	expiry *time.Timer
	done   chan struct{}
	err    error
	// grants are the held grants by token, judged by keep-alives. Grants
	// made by one command share its index as their token, so a token may
	// name several.
	grants map[uint64][]*Grant
}

// maxJudgedGrants bounds the grants one keep-alive carries (the server
// judges at most as many); a session holding more sends several at once.
const maxJudgedGrants = 1024

// track has keep-alives judge g. A grant that ended, or a session that did,
// is not tracked: the grant's watch has told it, or will.
func (s *Session) track(g *Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || g.ctx.Err() != nil {
		return
	}
	if s.grants == nil {
		s.grants = make(map[uint64][]*Grant)
	}
	s.grants[g.Token] = append(s.grants[g.Token], g)
}

func (s *Session) untrack(g *Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := slices.DeleteFunc(s.grants[g.Token], func(x *Grant) bool { return x == g })
	if len(gs) == 0 {
		delete(s.grants, g.Token)
	} else {
		s.grants[g.Token] = gs
	}
}

// held returns the session's held grants, each by token and owner (grants
// made by one command share its token), in chunks of at most
// maxJudgedGrants, one keep-alive each: every grant is judged at every
// keep-alive round, however many the session holds. There is always at
// least one chunk (nil when nothing is held).
func (s *Session) held() [][]*concordv1.HeldGrant {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*concordv1.HeldGrant
	for t, gs := range s.grants {
		for i, g := range gs {
			if !slices.ContainsFunc(gs[:i], func(x *Grant) bool { return x.owner == g.owner }) {
				all = append(all, &concordv1.HeldGrant{Token: t, Owner: g.owner})
			}
		}
	}
	if len(all) <= maxJudgedGrants {
		return [][]*concordv1.HeldGrant{all}
	}
	return slices.Collect(slices.Chunk(all, maxJudgedGrants))
}

// grantsLost tells the holders of grants the server says have ended: the
// owner's grant with the token, or, from a server that judges tokens
// alone, every grant with it.
func (s *Session) grantsLost(lost []*concordv1.LostGrant) {
	for _, l := range lost {
		s.mu.Lock()
		if s.grants == nil {
			// The session ended meanwhile (end took its grants, and told
			// them): nothing left to judge.
			s.mu.Unlock()
			return
		}
		var ended []*Grant
		s.grants[l.GetToken()] = slices.DeleteFunc(s.grants[l.GetToken()], func(g *Grant) bool {
			if l.GetOwner() != "" && g.owner != l.GetOwner() {
				return false
			}
			ended = append(ended, g)
			return true
		})
		if len(s.grants[l.GetToken()]) == 0 {
			delete(s.grants, l.GetToken())
		}
		s.mu.Unlock()
		for _, g := range ended {
			g.lose(fmt.Errorf("%w: %s (token %d): %s", ErrLockLost, namesOf(g.Names), g.Token, l.GetReason()))
		}
	}
}

// NewSession creates a session and keeps it alive until Close, ctx of the
// client, or loss.
func (c *Client) NewSession(ctx context.Context, opts ...SessionOption) (*Session, error) {
	o := sessionOptions{ttl: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	req := &concordv1.CreateSessionRequest{TtlMs: o.ttl.Milliseconds(), Name: o.name, Meta: c.meta()}
	sent := time.Now()
	resp, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.CreateSessionResponse], error) {
		return ep.session.Create(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	s := &Session{c: c, id: resp.GetId(), ttl: time.Duration(resp.GetTtlMs()) * time.Millisecond, done: make(chan struct{})}
	s.mu.Lock()
	s.deadline = leaseEnd(sent, s.ttl)
	s.expiry = time.AfterFunc(time.Until(s.deadline), s.checkDeadline)
	s.mu.Unlock()
	c.keepAliver().add(s)
	return s, nil
}

// clockRateMargin is the share of a TTL or hold time the SDK takes off
// its count, so that it stops vouching for a hold before the server can
// end it even when the leader's clock runs faster than the client's. The
// leader times a session from when it received a keep-alive and a hold
// from when it applied the grant, both after the SDK's starting point
// (the send), so without this margin the SDK's only slack is the
// request's one-way latency, a few milliseconds: less than a leader clock
// running 0.1% fast takes from a 10 s TTL. 0.5% is ten times the rate
// error NTP allows a clock to slew by (500 ppm) and five times two such
// clocks slewing apart; it costs a 10 s session 50 ms of notice.
const clockRateMargin = 200 // 1/200 = 0.5%

// leaseEnd is the moment until which the SDK counts a hold of length d,
// started by a request sent at sent, as certainly alive.
func leaseEnd(sent time.Time, d time.Duration) time.Time {
	return sent.Add(d - d/clockRateMargin)
}

// checkDeadline ends the session once its deadline has passed without a
// confirmed keep-alive: from then on the server may have expired it, and
// granted its locks to others. Confirmed keep-alives only move the deadline
// later, so the timer, armed for an earlier one, arms itself again.
func (s *Session) checkDeadline() {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	if left := time.Until(s.deadline); left > 0 {
		s.expiry.Reset(left)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.c.keepAliver().remove(s)
	s.end(fmt.Errorf("%w: no keep-alive confirmed within its TTL of %s", ErrSessionExpired, s.ttl))
}

// ID returns the session's ID.
func (s *Session) ID() int64 { return s.id }

// Client returns the client that keeps the session alive.
func (s *Session) Client() *Client { return s.c }

// TTL returns the session's time to live.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done is closed when the session is lost or closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended: ErrSessionExpired when lost, ErrClosed
// after Close (of the session or of its client), nil while it lives.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Deadline returns the time until which the session is known to live.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// end ends the session with err and, at once, the grants it holds.
func (s *Session) end(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	close(s.done)
	if s.expiry != nil {
		s.expiry.Stop()
	}
	grants := s.grants
	s.grants = nil
	s.mu.Unlock()
	for _, gs := range grants {
		for _, g := range gs {
			g.sessionEnded()
		}
	}
}

func (s *Session) confirmed(sent time.Time, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := leaseEnd(sent, ttl); d.After(s.deadline) {
		s.deadline = d
	}
}

// Close stops keeping the session alive and revokes it, deleting what is
// bound to it.
func (s *Session) Close(ctx context.Context) error {
	s.c.keepAliver().remove(s)
	s.end(closedError(fmt.Sprintf("session %d closed", s.id)))
	req := &concordv1.RevokeSessionRequest{Id: s.id, Meta: s.c.meta()}
	err := s.c.call(ctx, callWrite, func(ctx context.Context, ep *endpoint) error {
		resp, err := ep.session.Revoke(ctx, connect.NewRequest(req))
		if err == nil {
			// The revoke deleted the session's keys at this revision:
			// session reads must see that.
			s.c.observe(resp.Msg.GetHeader())
		}
		return err
	})
	if errors.Is(err, ErrSessionExpired) {
		return nil
	}
	return err
}

// Orphan stops keeping the session alive without revoking it; it expires
// on the server after its TTL.
func (s *Session) Orphan() {
	s.c.keepAliver().remove(s)
	s.end(closedError(fmt.Sprintf("session %d orphaned: no longer kept alive", s.id)))
}

// GetSession describes a session.
func (c *Client) GetSession(ctx context.Context, id int64) (*SessionInfo, error) {
	resp, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.GetSessionResponse], error) {
		return ep.session.Get(ctx, connect.NewRequest(&concordv1.GetSessionRequest{Id: id}))
	})
	if err != nil {
		return nil, err
	}
	return resp.GetSession(), nil
}

// ListSessions describes every session, in ID order. It reads them a page
// at a time (ListSessionsPage): each page is linearizable, the whole is not
// one snapshot (a session created while it reads is listed if its ID comes
// after the pages read; one that ends may be listed).
func (c *Client) ListSessions(ctx context.Context) ([]*SessionInfo, error) {
	var (
		out   []*SessionInfo
		after int64
	)
	for {
		page, more, err := c.ListSessionsPage(ctx, after, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			return out, nil
		}
		after = page[len(page)-1].GetId()
	}
}

// ListSessionsPage describes up to limit sessions whose IDs are above
// after, in ID order (limit 0 or above the server's maximum of 1,000 reads
// that many). more reports sessions beyond the page: read the next one
// after the last ID returned.
func (c *Client) ListSessionsPage(ctx context.Context, after, limit int64) (sessions []*SessionInfo, more bool, err error) {
	resp, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ListSessionsResponse], error) {
		return ep.session.List(ctx, connect.NewRequest(&concordv1.ListSessionsRequest{After: after, Limit: limit}))
	})
	if err != nil {
		return nil, false, err
	}
	return resp.GetSessions(), resp.GetMore(), nil
}

// RevokeSession ends a session by ID and returns how many holds ended with
// it: keys, lock grants and waits, and ID leases.
func (c *Client) RevokeSession(ctx context.Context, id int64) (int64, error) {
	req := &concordv1.RevokeSessionRequest{Id: id, Meta: c.meta()}
	resp, err := unaryCall(ctx, c, callWrite, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.RevokeSessionResponse], error) {
		return ep.session.Revoke(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return 0, err
	}
	c.observe(resp.GetHeader()) // the session's keys were deleted at this revision
	return resp.GetKeysDeleted(), nil
}

// KeepAliveOnce refreshes a session by ID once and returns its TTL.
func (c *Client) KeepAliveOnce(ctx context.Context, id int64) (time.Duration, error) {
	var ttl time.Duration
	err := c.call(ctx, callRead, func(ctx context.Context, ep *endpoint) error {
		r, err := ep.session.KeepAliveOnce(ctx, connect.NewRequest(&concordv1.KeepAliveRequest{Id: id}))
		if err != nil {
			return err
		}
		ttl = time.Duration(r.Msg.GetTtlMs()) * time.Millisecond
		return nil
	})
	return ttl, err
}

// keepAliveAnswerTimeout bounds how long a keep-alive may wait for its
// answer before the stream is abandoned for another member. A session with a
// short TTL waits less (answerTimeout): a keep-alive sent a third of a TTL
// after the last confirmed one, to a leader that then stops answering, must
// still leave time to reconnect and be confirmed elsewhere within the TTL.
const (
	keepAliveAnswerTimeout    = 2 * time.Second
	minKeepAliveAnswerTimeout = 250 * time.Millisecond
)

// answerTimeout is how long the stream waits for a keep-alive's answer while
// sessions keeps alive: a quarter of the shortest TTL, within
// [minKeepAliveAnswerTimeout, keepAliveAnswerTimeout]. With the keep-alive
// sent at a third of the TTL, giving up at seven twelfths leaves five twelfths
// of it (1.25 s of a 3 s TTL) to find the new leader and be confirmed there.
func answerTimeout(sessions []*Session) time.Duration {
	d := keepAliveAnswerTimeout
	for _, s := range sessions {
		d = min(d, s.ttl/4)
	}
	return max(d, minKeepAliveAnswerTimeout)
}

func oldestInflight(mu *sync.Mutex, inflight map[int64][]time.Time) time.Time {
	mu.Lock()
	defer mu.Unlock()
	var oldest time.Time
	for _, q := range inflight {
		if len(q) > 0 && (oldest.IsZero() || q[0].Before(oldest)) {
			oldest = q[0]
		}
	}
	return oldest
}

// keepAliver keeps every session of a client alive over one stream.
type keepAliver struct {
	c        *Client
	mu       sync.Mutex
	sessions map[int64]*Session
	closed   bool // the client was closed: no session is kept alive
	wake     chan struct{}
	stopped  chan struct{}
}

func (c *Client) keepAliver() *keepAliver {
	c.kaOnce.Do(func() {
		c.ka = &keepAliver{c: c, sessions: map[int64]*Session{}, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
		go c.ka.run()
	})
	return c.ka
}

func (k *keepAliver) add(s *Session) {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		s.end(k.closedErr(s))
		return
	}
	k.sessions[s.id] = s
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *keepAliver) remove(s *Session) {
	k.mu.Lock()
	delete(k.sessions, s.id)
	k.mu.Unlock()
}

func (k *keepAliver) wait() { <-k.stopped }

func (k *keepAliver) snapshot() []*Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*Session, 0, len(k.sessions))
	for _, s := range k.sessions {
		out = append(out, s)
	}
	return out
}

func (k *keepAliver) closedErr(s *Session) error {
	return fmt.Errorf("%w: session %d is no longer kept alive (the server expires it after its TTL of %s)", ErrClosed, s.id, s.ttl)
}

// stop ends every session once the client is closed: none is kept alive
// any more, so none can be trusted, nor the grants it holds.
func (k *keepAliver) stop() {
	k.mu.Lock()
	k.closed = true
	sessions := k.sessions
	k.sessions = map[int64]*Session{}
	k.mu.Unlock()
	for _, s := range sessions {
		s.end(k.closedErr(s))
	}
}

func (k *keepAliver) run() {
	defer close(k.stopped)
	defer k.stop()
	ctx := k.c.ctx
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if len(k.snapshot()) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-k.wake:
				continue
			}
		}
		ep := k.c.pick()
		answered, err := k.stream(ctx, ep)
		if ctx.Err() != nil {
			return
		}
		if answered {
			// The stream worked before it failed: this failure is a new
			// one, not the next of a series, and reconnects at once. A
			// backoff kept from failures long past took up to 500 ms of
			// every later reconnect, much of a short TTL.
			backoff = 50 * time.Millisecond
		}
		k.c.failover(ep)
		k.c.log.Debug("keep-alive stream ended", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = k.c.syncLeader(sctx, false)
		cancel()
	}
}

// stream runs one keep-alive stream until it fails or no session is left,
// and reports whether the member answered any keep-alive on it.
func (k *keepAliver) stream(ctx context.Context, ep *endpoint) (answered bool, _ error) {
	sctx, cancel := context.WithCancel(ctx)
	stream := ep.session.KeepAlive(sctx)
	// Every way out ends the request too, not only its context: Go's
	// HTTP/2 transport does not notice a cancelled context while it waits
	// for the next message of a request body, so the stream stayed open,
	// and its receiver (below) blocked for good. A Send that failed on
	// the cancelled context then waited for that receiver forever, and
	// Client.Close with it.
	defer func() {
		cancel()
		_ = stream.CloseRequest()
	}()
	var pmu sync.Mutex
	inflight := map[int64][]time.Time{}
	recvErr := make(chan error, 1)
	var got atomic.Bool
	go func() {
		for {
			resp, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			got.Store(true)
			pmu.Lock()
			q := inflight[resp.GetId()]
			var sent time.Time
			if len(q) > 0 {
				sent, inflight[resp.GetId()] = q[0], q[1:]
			}
			pmu.Unlock()
			k.mu.Lock()
			s := k.sessions[resp.GetId()]
			k.mu.Unlock()
			if s == nil {
				continue
			}
			if resp.GetExpired() {
				k.remove(s)
				s.end(fmt.Errorf("%w: session %d", ErrSessionExpired, s.id))
				continue
			}
			if !sent.IsZero() {
				s.confirmed(sent, time.Duration(resp.GetTtlMs())*time.Millisecond)
			}
			s.grantsLost(resp.GetLost())
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastSent := map[int64]time.Time{}
	for {
		now := time.Now()
		sessions := k.snapshot()
		if len(sessions) == 0 {
			_ = stream.CloseRequest()
			return got.Load(), nil
		}
		// A member that stops answering keeps the stream open: give up on
		// it when a keep-alive waits too long, and reconnect elsewhere.
		if oldest, limit := oldestInflight(&pmu, inflight), answerTimeout(sessions); !oldest.IsZero() && now.Sub(oldest) > limit {
			return got.Load(), fmt.Errorf("%w: %s did not answer a keep-alive within %s", ErrUnavailable, ep.addr, limit)
		}
		for _, s := range sessions {
			interval := s.ttl / 3
			if time.Until(s.Deadline()) < s.ttl/2 {
				// Behind schedule (a slow or failed keep-alive): try often.
				interval = min(interval, 200*time.Millisecond)
			}
			if now.Sub(lastSent[s.id]) < interval {
				continue
			}
			lastSent[s.id] = now
			for _, held := range s.held() {
				pmu.Lock()
				inflight[s.id] = append(inflight[s.id], now)
				pmu.Unlock()
				if err := stream.Send(&concordv1.KeepAliveRequest{Id: s.id, Held: held}); err != nil {
					// The member's answer, if it sent one, says why (a
					// failed Send only says the stream ended).
					_ = stream.CloseRequest()
					select {
					case rerr := <-recvErr:
						return got.Load(), fromWire(rerr)
					case <-ctx.Done():
						return got.Load(), ctx.Err()
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return got.Load(), ctx.Err()
		case err := <-recvErr:
			return got.Load(), fromWire(err)
		case <-tick.C:
		case <-k.wake:
		}
	}
}

// closedError ends a session closed or orphaned by its owner: it is
// ErrClosed, and says which session rather than that the client closed.
type closedError string

func (e closedError) Error() string        { return "concord: " + string(e) }
func (e closedError) Is(target error) bool { return target == ErrClosed }

// sessionGone is the error of a call made on a session that has ended
// (err, the session's Err): ErrSessionExpired, and still what err is.
func sessionGone(err error) error {
	if errors.Is(err, ErrSessionExpired) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrSessionExpired, err)
}
