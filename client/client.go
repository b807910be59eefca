package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/api/vtcodec"
)

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// Endpoints are client addresses of members, as host:port or URLs.
	// At least one is required; give all members for failover.
	Endpoints []string
	// TLS, if set, is used for https endpoints (host:port endpoints are
	// then dialed with TLS).
	TLS *tls.Config
	// Token is sent as a bearer token when the cluster requires one. New
	// refuses one with a control character (a line break would add
	// headers) with ErrInvalidArgument.
	Token string
	// DialTimeout bounds New's first contact with the cluster; default 5s.
	DialTimeout time.Duration
	// RetryTimeout bounds how long a call retries across leader changes
	// and member failures when its ctx has no deadline; default 15s.
	RetryTimeout time.Duration
	// AttemptTimeout bounds one attempt of a unary call at one member; a
	// member that does not answer in time (paused, partitioned) is left for
	// another. Default 3s.
	AttemptTimeout time.Duration
	// ClientID identifies this client's writes for deduplication; default
	// random. Two live clients must not share one. A process may reuse its
	// ClientID after a restart: request IDs start from the wall clock, so
	// only a clock stepped back across the restart could repeat one.
	ClientID string
	// Logger receives the SDK's rare diagnostics; default discards.
	Logger *slog.Logger
	// DisableBatching sends every KV call as its own RPC instead of
	// coalescing concurrent calls on one stream per member.
	DisableBatching bool
	// DisableFramedBatch keeps the batch stream on Connect (gRPC over
	// HTTP/2) instead of the framed protocol (api/batchwire) that the SDK
	// switches its connection to by default. The SDK falls back to Connect
	// on its own when a member refuses the switch; the option is for a
	// proxy in between that passes HTTP/2 but breaks HTTP/1.1 Upgrades.
	DisableFramedBatch bool
	// AllowNoLeader lets New succeed when members answer but none has
	// known a leader within DialTimeout (a lost quorum), where it would
	// fail with ErrUnavailable. Status and stale reads are served by any
	// member; calls that need the leader fail with ErrUnavailable until
	// one is elected. For tools that inspect a cluster, such as
	// `concord cluster status`.
	AllowNoLeader bool
}

// Client talks to a concord cluster. It is safe for concurrent use; create
// one per process and share it.
type Client struct {
	cfg       Config
	httpc     *http.Client
	endpoints []*endpoint
	log       *slog.Logger

	leader   atomic.Int32 // index of the leader's endpoint, -1 unknown
	current  atomic.Int32 // index of the endpoint in use
	refresh  sync.Mutex
	lastSync atomic.Int64
	// relearning is set while a background syncLeader runs.
	relearning atomic.Bool

	clientID string
	seq      atomic.Uint64
	maxRev   atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	ka     *keepAliver
	kaOnce sync.Once
	closed atomic.Bool

	idsMu  sync.Mutex
	idTags map[string]*idCoalescer // NextIDs coalescers by tag

	// abandons are the acquires given up on that the SDK is taking back,
	// by session and owner (see abandon).
	abandonMu sync.Mutex
	abandons  map[abandonKey]chan struct{}
}

type endpoint struct {
	addr string
	tls  bool
	// framedRefused is when the member last refused the framed batch
	// protocol (UnixNano), 0 if it never did.
	framedRefused atomic.Int64
	kv            concordv1connect.KVClient
	session       concordv1connect.SessionClient
	cluster       concordv1connect.ClusterClient
	lock          concordv1connect.LockClient
	ids           concordv1connect.IDsClient
	batcher       *batcher
}

// MaxClientIDBytes bounds Config.ClientID, as the server does.
const MaxClientIDBytes = 128

// New connects to the cluster: it validates the configuration and waits
// until one endpoint answers, learning the leader.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", ErrInvalidArgument)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RetryTimeout <= 0 {
		cfg.RetryTimeout = 15 * time.Second
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.ClientID) > MaxClientIDBytes {
		return nil, fmt.Errorf("%w: ClientID is %d bytes; the limit is %d", ErrInvalidArgument, len(cfg.ClientID), MaxClientIDBytes)
	}
	// The token goes into a header, written raw by the framed batch
	// upgrade: a line break in it would add headers.
	if i := strings.IndexFunc(cfg.Token, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }); i >= 0 {
		return nil, fmt.Errorf("%w: Token has a control character (%q at byte %d), which no header value may hold", ErrInvalidArgument, cfg.Token[i], i)
	}
	if cfg.ClientID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		cfg.ClientID = "sdk-" + hex.EncodeToString(b[:])
	}
	c := &Client{cfg: cfg, log: cfg.Logger, clientID: cfg.ClientID}
	// Request IDs start from the wall clock, in nanoseconds, and count up:
	// a process restarted with the same ClientID numbers its writes above
	// the previous one's (which would have had to write more than once per
	// nanosecond to catch up), so the server, which remembers results for
	// minutes, never answers a new write with an old one's result.
	c.seq.Store(uint64(time.Now().UnixNano()))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.httpc = newHTTPClient(cfg)
	opts := []connect.ClientOption{connect.WithGRPC(), connect.WithReadMaxBytes(64 << 20), connect.WithSendMaxBytes(64 << 20), vtcodec.Option(),
		// Small messages are cheaper sent plain than compressed.
		connect.WithAcceptCompression("gzip", nil, nil)}
	if cfg.Token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(cfg.Token)))
	}
	for _, ep := range cfg.Endpoints {
		url, addr, err := endpointURL(ep, cfg.TLS != nil)
		if err != nil {
			return nil, err
		}
		ep := &endpoint{
			addr:    addr,
			tls:     strings.HasPrefix(url, "https://"),
			kv:      concordv1connect.NewKVClient(c.httpc, url, opts...),
			session: concordv1connect.NewSessionClient(c.httpc, url, opts...),
			cluster: concordv1connect.NewClusterClient(c.httpc, url, opts...),
			lock:    concordv1connect.NewLockClient(c.httpc, url, opts...),
			ids:     concordv1connect.NewIDsClient(c.httpc, url, opts...),
		}
		ep.batcher = newBatcher(c, ep)
		c.endpoints = append(c.endpoints, ep)
	}
	c.leader.Store(-1)
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := c.syncLeader(dctx, true); err != nil {
		c.Close()
		if errors.Is(err, ErrUnauthenticated) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: found no leader through %v within %s: %w", ErrUnavailable, cfg.Endpoints, cfg.DialTimeout, err)
	}
	return c, nil
}

func newHTTPClient(cfg Config) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second}
	tr := &http.Transport{
		Protocols:           &protocols,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     cfg.TLS,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		// A member that stops answering (SIGSTOP, a VM pause, a blackholed
		// network) keeps its TCP connections open; HTTP/2 pings find it,
		// so streams fail over instead of hanging.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: 2 * time.Second},
	}
	return &http.Client{Transport: tr}
}

func endpointURL(ep string, tlsOn bool) (url, addr string, err error) {
	switch {
	case strings.HasPrefix(ep, "http://"):
		addr = strings.TrimPrefix(ep, "http://")
	case strings.HasPrefix(ep, "https://"):
		addr = strings.TrimPrefix(ep, "https://")
		tlsOn = true
	default:
		addr = ep
	}
	addr = strings.TrimSuffix(addr, "/")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%w: endpoint %q: %v", ErrInvalidArgument, ep, err)
	}
	if tlsOn {
		return "https://" + addr, addr, nil
	}
	return "http://" + addr, addr, nil
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// Close stops the client's background work (keep-alives, watches). Sessions
// are not revoked: they expire on the server unless closed first. No longer
// kept alive, they end at once, with an error wrapping ErrClosed, and so do
// the grants they hold (ErrLockLost). A queued acquire, and a call that
// would retry, end with ErrClosed; a call whose attempt may have taken
// effect also with ErrUnknownOutcome.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.cancel()
	// Through kaOnce, so that a session created meanwhile is ended too.
	c.keepAliver().wait()
	c.httpc.CloseIdleConnections()
	return nil
}

// ClientID returns the ID that deduplicates this client's writes.
func (c *Client) ClientID() string { return c.clientID }

// LastRevision returns the highest revision this client has seen. Session
// reads wait until the serving member has applied it.
func (c *Client) LastRevision() uint64 { return c.maxRev.Load() }

func (c *Client) observe(h *concordv1.ResponseHeader) {
	rev := h.GetRevision()
	for {
		cur := c.maxRev.Load()
		if rev <= cur || c.maxRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

func (c *Client) meta() *concordv1.WriteMeta {
	return &concordv1.WriteMeta{ClientId: c.clientID, RequestId: c.seq.Add(1)}
}

// relearnInterval is the least time between two leader look-ups prompted by
// a member that says it forwarded calls.
const relearnInterval = 2 * time.Second

// relearnLeader looks the leader up again in the background, at most once
// per relearnInterval: a member answered that it is not the leader (the
// leader changed since the client last looked), so every write through it
// costs an extra hop.
func (c *Client) relearnLeader() {
	if time.Since(time.Unix(0, c.lastSync.Load())) < relearnInterval || !c.relearning.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.relearning.Store(false)
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		defer cancel()
		if err := c.syncLeader(ctx, false); err != nil {
			c.log.Debug("leader look-up failed", "err", err)
		}
		// Count a failed look-up too, so a cluster without a reachable
		// leader is not asked on every response.
		c.lastSync.Store(time.Now().UnixNano())
	}()
}

// syncLeader asks the endpoints who leads and points the client at it.
// Without firstContact, one round of answers is enough, even one that knows
// no leader; on first contact it asks until a member names a leader or ctx
// ends.
func (c *Client) syncLeader(ctx context.Context, firstContact bool) error {
	c.refresh.Lock()
	defer c.refresh.Unlock()
	answered := false // a member answered, without naming a leader
	for {
		found, err := c.askLeader(ctx)
		if found || !firstContact && err == nil {
			return nil
		}
		if errors.Is(err, ErrUnauthenticated) || !firstContact {
			return err
		}
		if err == nil {
			answered = true
			err = fmt.Errorf("%w: the members answered but none knows a leader yet", ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			if answered && c.cfg.AllowNoLeader {
				return nil
			}
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// statusAnswer is one endpoint's answer to a leader look-up.
type statusAnswer struct {
	idx  int
	resp *concordv1.StatusResponse
	err  error
}

// leaderGrace is how long a look-up waits, after the first answer that
// names a leader, for answers of a later term: a member that has not yet
// heard of an election names the old leader, which may be the member that
// stopped answering.
const leaderGrace = 20 * time.Millisecond

// askLeader asks every endpoint at once who leads, so that one member that
// does not answer (paused, partitioned) costs nothing while others do: asked
// one at a time, such a member took the look-up's whole budget, and a
// session's keep-alives or a call's retries went back to it. Of the answers
// that name a leader, the one of the highest term wins; the client then
// talks to the member that gave it (current) and to the leader. found
// reports whether an answer named a leader; err is the last failure when
// no member answered.
func (c *Client) askLeader(ctx context.Context) (found bool, err error) {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	answers := make(chan statusAnswer, len(c.endpoints))
	for i, ep := range c.endpoints {
		go func() {
			resp, err := ep.cluster.Status(actx, connect.NewRequest(&concordv1.StatusRequest{}))
			if err != nil {
				answers <- statusAnswer{idx: i, err: fromWire(err)}
				return
			}
			answers <- statusAnswer{idx: i, resp: resp.Msg}
		}()
	}
	var best, some *statusAnswer
	var grace <-chan time.Time
	for range c.endpoints {
		var a statusAnswer
		select {
		case a = <-answers:
		case <-grace:
		case <-actx.Done():
		}
		if a.resp == nil && a.err == nil {
			break // the grace or the budget ran out
		}
		if a.err != nil {
			err = a.err
			if errors.Is(err, ErrUnauthenticated) {
				return false, err
			}
			continue
		}
		// The member's revision is one the client has now seen: a watch
		// from now, started before any other call, resumes after it if
		// its first stream fails early.
		c.observe(a.resp.GetHeader())
		switch {
		case a.resp.GetLeader() == "":
			if some == nil {
				some = &a
			}
		case best == nil || a.resp.GetTerm() > best.resp.GetTerm() ||
			a.resp.GetTerm() == best.resp.GetTerm() && c.leaderIndex(a.resp) >= 0 && c.leaderIndex(best.resp) < 0:
			best = &a
			if grace == nil {
				grace = time.After(leaderGrace)
			}
		}
	}
	choice := best
	if choice == nil {
		choice = some
	}
	if choice == nil {
		if err == nil {
			err = actx.Err()
		}
		return false, err
	}
	c.current.Store(int32(choice.idx))
	c.leader.Store(c.leaderIndex(choice.resp))
	c.lastSync.Store(time.Now().UnixNano())
	return best != nil, nil
}

func (c *Client) leaderIndex(st *concordv1.StatusResponse) int32 {
	for _, m := range st.GetMembers() {
		if m.GetRole() != "leader" || m.GetClientAddr() == "" {
			continue
		}
		for i, ep := range c.endpoints {
			if ep.addr == m.GetClientAddr() {
				return int32(i)
			}
		}
	}
	return -1
}

// pick returns the endpoint to use: the leader when known.
func (c *Client) pick() *endpoint {
	if l := c.leader.Load(); l >= 0 {
		return c.endpoints[l]
	}
	return c.endpoints[c.current.Load()]
}

// failover moves away from an endpoint that failed.
func (c *Client) failover(failed *endpoint) {
	for i, ep := range c.endpoints {
		if ep != failed {
			continue
		}
		c.leader.CompareAndSwap(int32(i), -1)
		c.current.CompareAndSwap(int32(i), int32((i+1)%len(c.endpoints)))
	}
}

// moveOff points the client at an endpoint not in skip (for one stream's
// sake), without forgetting the leader for other calls.
func (c *Client) moveOff(failed *endpoint, skip map[*endpoint]bool) {
	for i, ep := range c.endpoints {
		if ep == failed {
			for j := 1; j < len(c.endpoints); j++ {
				next := (i + j) % len(c.endpoints)
				if !skip[c.endpoints[next]] {
					c.leader.CompareAndSwap(int32(i), -1)
					c.current.Store(int32(next))
					return
				}
			}
		}
	}
}

// The server answers a retried write with its first result while it
// remembers it: for 30 s after it was applied, unless the client wrote
// 65,536 times since (docs/kv.md). The SDK sends a call again after an
// attempt whose outcome it does not know only while a new attempt, answered
// or not within AttemptTimeout, would still fall inside that guarantee, with
// a margin: after that, a retry could apply a write a second time.
var dedupeRetryWindow = 28 * time.Second // of fsm.DedupeMinAgeNanos' 30 s

// dedupeRetryWrites is how many writes the client may issue after an
// attempt of unknown outcome before the call stops retrying (of the
// server's fsm.DedupeMaxWindow, 65,536).
const dedupeRetryWrites = 60000

// withinDedupe reports whether a write whose first attempt of unknown
// outcome was sent at since, its own request ID about seqThen, may be sent
// again now that the client's counter is at seqNow.
func withinDedupe(since time.Time, seqThen, seqNow uint64, attempt time.Duration) bool {
	return time.Since(since)+attempt <= dedupeRetryWindow && seqNow-seqThen < dedupeRetryWrites
}

// certainlyNotApplied reports whether err says that the attempt did nothing
// (a member that does not lead, or that is shutting down, refused it).
func certainlyNotApplied(err error) bool {
	switch reasonOf(err) {
	case "NOT_LEADER", "NO_LEADER", "SHUTTING_DOWN":
		return true
	}
	return errors.As(err, new(notSent))
}

// retryable reports whether a failed call may be sent again. Reads always
// may; writes carry a request ID the server deduplicates, so an unknown
// outcome may be retried too. Calls without an ID (membership changes) are
// retried only when the server says it did nothing, or was never reached.
func retryable(err error, idempotent bool) bool {
	switch reasonOf(err) {
	case "NOT_LEADER", "NO_LEADER", "SHUTTING_DOWN":
		return true
	case "UNKNOWN_OUTCOME", "TIMEOUT":
		return idempotent
	case "":
		// A member that could not be reached got nothing: any call may
		// go to another.
		return errors.Is(err, ErrUnavailable) && (idempotent || errors.As(err, new(notSent)))
	}
	return false
}

// callKind says how a call may be retried.
type callKind int

const (
	// callOnce: sent again only when the server said it did nothing
	// (membership changes, which carry no request ID).
	callOnce callKind = iota
	// callRead: changes nothing; sent again until the deadline.
	callRead
	// callWrite: carries a request ID, which the server deduplicates while
	// it remembers it; sent again only within that guarantee.
	callWrite
)

// call runs f against the chosen endpoint, failing over and retrying while
// it is safe, until ctx (or the retry timeout) ends.
func (c *Client) call(ctx context.Context, kind callKind, f func(context.Context, *endpoint) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err // nothing is sent
	}
	idempotent := kind != callOnce
	// The write's request ID was drawn just before: the server's count of
	// newer writes starts about here.
	seq := c.seq.Load()
	// ours: the deadline is the client's RetryTimeout, not the caller's.
	ours := false
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RetryTimeout)
		defer cancel()
		ours = true
	}
	backoff := 10 * time.Millisecond
	// unknownSince is when the first attempt of a write whose outcome is
	// unknown was sent (zero while every failure said nothing was done).
	var unknownSince time.Time
	// end is the error of a write or read that stops retrying after err:
	// for a write that may have been applied, an unknown outcome.
	end := func(err error) error {
		if kind == callWrite && !unknownSince.IsZero() && !errors.Is(err, ErrUnknownOutcome) {
			return fmt.Errorf("%w: an attempt may have been applied; the last one: %w", ErrUnknownOutcome, err)
		}
		return lastAttempt(err)
	}
	// closed is the error of a call cut short by Close after err.
	closed := func(err error) error {
		if kind == callWrite && (!unknownSince.IsZero() || !certainlyNotApplied(err)) {
			return closedMidCall()
		}
		return ErrClosed
	}
	for {
		ep := c.pick()
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		err := fromWire(f(actx, ep))
		cancel()
		if err == nil {
			return nil
		}
		if c.ctx.Err() != nil {
			if reasonOf(err) != "" && !retryable(err, idempotent) {
				return err // the server's own answer, Close or not
			}
			return closed(err)
		}
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			// This member did not answer in time: its outcome is unknown.
			err = fmt.Errorf("%w: %s did not answer within %s", ErrUnavailable, ep.addr, c.cfg.AttemptTimeout)
		case errors.Is(err, context.Canceled) && ctx.Err() == nil:
			// Neither the caller nor Close cancelled it: the member did
			// (a killed member cancels the requests it serves, and may
			// answer before its connections drop), or a proxy. Whatever
			// it did is unknown; the call goes on elsewhere, a write
			// under its request ID.
			err = fmt.Errorf("%w: %s ended the call as cancelled", ErrUnavailable, ep.addr)
		case errors.Is(err, context.DeadlineExceeded) && ours:
			// The client's own bound ended the call, not the caller's:
			// the outcome is unknown just the same, and the caller, who
			// set no deadline, must not take it for its own.
			err = fmt.Errorf("%w: %s did not answer within the retry timeout of %s (%w)", ErrUnavailable, ep.addr, c.cfg.RetryTimeout, err)
		}
		if !retryable(err, idempotent) {
			if kind == callWrite && !unknownSince.IsZero() && errors.Is(err, ErrQuotaExceeded) {
				// A member may refuse over a quota from its own state,
				// before the log, where the dedupe table would have
				// answered this attempt as the earlier one: that one
				// may still be applied.
				return end(err)
			}
			return err
		}
		if kind == callWrite && unknownSince.IsZero() && !certainlyNotApplied(err) {
			unknownSince = sent
		}
		// A write past the dedupe guarantee ends as a call at its deadline.
		expired := func() bool {
			return ctx.Err() != nil || !unknownSince.IsZero() && !withinDedupe(unknownSince, seq, c.seq.Load(), c.cfg.AttemptTimeout)
		}
		if expired() {
			return end(err)
		}
		c.log.Debug("retrying", "endpoint", ep.addr, "err", err)
		if reasonOf(err) != "NO_LEADER" {
			c.failover(ep)
		}
		select {
		case <-ctx.Done():
			return end(err)
		case <-c.ctx.Done():
			return closed(err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = c.syncLeader(sctx, false)
		cancel()
		if expired() {
			return end(err)
		}
	}
}

// closedMidCall is the error of a call cut short by Client.Close after an
// attempt whose outcome is unknown: ErrClosed, which alone says the call had
// no effect, and ErrUnknownOutcome, since a write may have been applied.
func closedMidCall() error {
	return fmt.Errorf("%w: the client was closed during the call, after an attempt that may have taken effect: %w", ErrUnknownOutcome, ErrClosed)
}

// lastAttempt is the error of a call that stops retrying after err: an
// unknown outcome when the server said so or timed out.
func lastAttempt(err error) error {
	if reasonOf(err) == "UNKNOWN_OUTCOME" || reasonOf(err) == "TIMEOUT" {
		return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	}
	return err
}
