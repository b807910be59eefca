package fsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/ids"
	"github.com/concord-dev/concord/internal/kv"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/member"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/session"
)

var (
	// ErrBadCommand is the result of a log entry that does not decode to a
	// known command. Every member reaches the same verdict.
	ErrBadCommand = errs.New("BAD_COMMAND", "fsm: malformed or unknown command")
	// ErrRequestIDReused is the result of a write whose request ID its
	// client already used for a write of another kind: the remembered
	// result is not an answer to it, and nothing is applied.
	ErrRequestIDReused = errs.New("REQUEST_ID_REUSED", "fsm: request ID already used by another kind of write")
	// ErrInternal is the reason given to errors without a sentinel.
	ErrInternal = errs.New("INTERNAL", "internal error")
	// ErrQuotaExceeded is returned for a write that would grow the state
	// beyond its configured bounds: refused by a member before it
	// proposes (--quota-bytes, --max-keys, --max-locks) or, for
	// --max-locks from RulesLockLimit, by the state machine itself.
	ErrQuotaExceeded = errs.New("QUOTA_EXCEEDED", "state quota exceeded")
	// ErrSnapshotFormat is a snapshot (a backup file, or one sent by another
	// member) in an encoding this build does not read: made by a newer
	// concord, not damaged. It is refused whole.
	ErrSnapshotFormat = errors.New("fsm: snapshot format this build does not read")
)

// Config configures a state machine. Zero fields take the documented
// defaults. None of these may change what Apply does: they bound derived
// state only.
type Config struct {
	// HistoryEvents bounds the watch history; default 100,000 events.
	HistoryEvents int
	// HistoryBytes bounds the watch history; default 64 MiB.
	HistoryBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics receives apply and snapshot measurements; nil disables them.
	Metrics *Metrics
	// MaxRulesVersion lowers the highest rules version this state machine
	// applies below the build's MaxRulesVersion, so that tests can run a
	// member as a build of an older release; 0 (or a value above the
	// build's) means MaxRulesVersion.
	MaxRulesVersion uint32
	// OnHalt, if set, is called once, outside the state machine's lock,
	// when the state machine stops applying entries: a RaiseRules entry
	// or a snapshot asks for a rules version above MaxRulesVersion
	// (ErrRulesTooNew). The member must stop; its binary must be upgraded.
	OnHalt func(error)
}

func (c *Config) setDefaults() {
	if c.HistoryEvents <= 0 {
		c.HistoryEvents = 100_000
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxRulesVersion == 0 || c.MaxRulesVersion > MaxRulesVersion {
		c.MaxRulesVersion = MaxRulesVersion
	}
}

// TxnReadLimits bound range operations inside transactions. They shape
// results that are remembered for retries, so they are fixed.
var TxnReadLimits = kv.ReadLimits{MaxKeys: 1000, MaxBytes: 4 << 20}

// FSM is the replicated state machine. It implements raft.BatchingFSM.
type FSM struct {
	cfg Config

	mu        sync.RWMutex
	kv        *kv.Store
	sessions  *session.Table
	locks     *lock.Table
	ids       *ids.Table
	members   *member.Registry
	dedupe    *dedupe
	now       int64
	lastSweep uint64
	pending   []kv.Event
	// rules is the rules version entries are applied by (RaiseRules).
	rules uint32
	// clusterID is the cluster's ID (SetClusterID), "" until one is
	// applied. It is replicated state, under mu like the rest; clusterIDv
	// mirrors it for readers on the peer connections' path.
	clusterID  string
	clusterIDv atomic.Pointer[string]
	// halted, once set, stops every further apply (ErrRulesTooNew).
	halted error

	// The elapsed clock ages dedupe records. It advances by the time a
	// leader measured between two commands of its own term, so that an
	// offset clock on a new leader cannot make it jump; within a term it
	// runs at the leader's rate.
	elapsed    int64
	stampTerm  uint64
	stampNanos int64

	history *kv.History

	applied   atomic.Uint64
	appliedMu sync.Mutex
	appliedCh chan struct{}
}

// New returns an empty state machine.
func New(cfg Config) *FSM {
	cfg.setDefaults()
	f := &FSM{
		cfg:       cfg,
		sessions:  session.NewTable(),
		members:   member.NewRegistry(),
		dedupe:    newDedupe(),
		rules:     BaselineRulesVersion,
		history:   kv.NewHistory(cfg.HistoryEvents, cfg.HistoryBytes),
		appliedCh: make(chan struct{}),
	}
	f.kv = kv.NewStore(f.sessions)
	f.locks = lock.NewTable(f.sessions)
	f.ids = ids.NewTable(f.sessions)
	f.kv.SetLockChecker(f.locks)
	f.sessions.OnEnd(func(rev uint64, id int64) int64 {
		n, evs := f.kv.DeleteSession(rev, id)
		f.pending = append(f.pending, evs...)
		return n + f.locks.EndSession(rev, f.now/1e6, id) + f.ids.EndSession(f.now/1e6, id)
	})
	if cfg.Metrics != nil {
		cfg.Metrics.attach(f)
	}
	return f
}

// SetSessionObserver lets the leader's expiry tracker follow the session
// table. Call before the state machine is in use.
func (f *FSM) SetSessionObserver(o session.Observer) { f.sessions.SetObserver(o) }

// SetLockObserver lets the server follow grants and releases (to push
// grants to waiting clients and to time hold limits). Call before use.
func (f *FSM) SetLockObserver(o lock.Observer) { f.locks.SetObserver(o) }

// History returns the watch history.
func (f *FSM) History() *kv.History { return f.history }

// State is read access to the state machine, valid only inside Read.
type State struct {
	KV       *kv.Store
	Sessions *session.Table
	Locks    *lock.Table
	IDs      *ids.Table
	Members  *member.Registry
	// Applied is the index the state reflects.
	Applied uint64
	// NowUnixNano is the state machine's time.
	NowUnixNano int64
	// RulesVersion is the rules version entries are applied by.
	RulesVersion uint32
	// ClusterID is the cluster's ID, "" until one is applied.
	ClusterID string
}

// Read runs fn with a consistent view of the state. fn must not keep
// references to mutable structures after it returns (items are immutable and
// may be kept).
func (f *FSM) Read(fn func(State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(State{KV: f.kv, Sessions: f.sessions, Locks: f.locks, IDs: f.ids, Members: f.members, Applied: f.applied.Load(), NowUnixNano: f.now, RulesVersion: f.rules, ClusterID: f.clusterID})
}

// Remembered reports whether the state machine holds the result of the
// write that client numbered req: a retry of it is answered with that result
// and changes nothing.
func (f *FSM) Remembered(client string, req uint64) bool {
	if client == "" {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	c := f.dedupe.clients[client]
	if c == nil {
		return false
	}
	_, ok := c.find(req)
	return ok
}

// AppliedIndex returns the last applied index.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until the state machine has applied index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.appliedMu.Lock()
		if f.applied.Load() >= index {
			f.appliedMu.Unlock()
			return nil
		}
		ch := f.appliedCh
		f.appliedMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *FSM) setApplied(index uint64) {
	f.appliedMu.Lock()
	f.applied.Store(index)
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.appliedMu.Unlock()
}

// ApplyBatch applies committed log entries in order and returns one
// *internalv1.Result per entry (nil for non-command entries). It implements
// raftnode.StateMachine.
func (f *FSM) ApplyBatch(logs []raftnode.Entry) []any {
	if len(logs) == 0 {
		return nil
	}
	start := time.Now()
	out := make([]any, len(logs))
	f.mu.Lock()
	wasHalted := f.halted != nil
	prev := f.applied.Load()
	last := prev
	for i, l := range logs {
		if f.halted != nil {
			// Applied by older rules, this entry and every later one
			// could leave a state the other members do not have.
			out[i] = ErrorResult(f.halted)
			continue
		}
		if l.Type == raftnode.EntryCommand {
			out[i] = f.applyCommand(l.Index, l.Term, l.Data)
			if f.halted != nil {
				continue
			}
		}
		f.maybeSweep(prev, l.Index)
		prev = l.Index
		last = l.Index
	}
	evs := f.pending
	f.pending = nil
	f.applied.Store(last)
	halted := f.halted
	f.mu.Unlock()

	f.history.Append(evs)
	f.history.Advance(last)
	f.setApplied(last)
	if m := f.cfg.Metrics; m != nil {
		m.observeApply(len(logs), time.Since(start))
	}
	if halted != nil && !wasHalted {
		f.halt(halted)
	}
	return out
}

// halt reports the error that stopped the state machine.
func (f *FSM) halt(err error) {
	f.cfg.Logger.Error("the state machine stopped applying entries: upgrade this member's binary to a release that applies the cluster's rules version, then start it again", "err", err)
	if f.cfg.OnHalt != nil {
		f.cfg.OnHalt(err)
	}
}

func (f *FSM) maybeSweep(prev, index uint64) {
	if prev/sweepEvery == index/sweepEvery {
		return
	}
	f.lastSweep = index
	f.dedupe.sweep(f.elapsed - DedupeIdleNanos)
}

// stamp advances the state machine's time and elapsed clock with a
// command's leader stamp.
func (f *FSM) stamp(term uint64, t int64) {
	if t > f.now {
		f.now = t
	}
	if term == f.stampTerm && t > f.stampNanos {
		f.elapsed += t - f.stampNanos
	}
	if term != f.stampTerm || t > f.stampNanos {
		f.stampTerm, f.stampNanos = term, t
	}
}

func (f *FSM) applyCommand(index, term uint64, data []byte) *internalv1.Result {
	// The generated decoder (vtprotobuf) does not check strings for UTF-8
	// as proto.Unmarshal does; every string in a log entry was checked when
	// its request was decoded at the API (or built by the server), and the
	// log store checksums the entry, so the check would only cost time (a
	// third of a lock command's decode).
	var cmd internalv1.Command
	if err := cmd.UnmarshalVT(data); err != nil {
		return ErrorResult(errs.Wrapf(ErrBadCommand, "decode: %v", err))
	}
	if r, ok := cmd.GetOp().(*internalv1.Command_RaiseRules); ok {
		// Checked before the entry changes anything, its time stamp
		// included: the state stays the one of the entry before.
		if v := r.RaiseRules.GetVersion(); v > f.cfg.MaxRulesVersion {
			f.halted = fmt.Errorf("%w: entry %d raises the rules version to %d, and this build applies up to %d",
				ErrRulesTooNew, index, v, f.cfg.MaxRulesVersion)
			return ErrorResult(f.halted)
		}
	}
	f.stamp(term, cmd.GetTimeUnixNano())
	client, req := cmd.GetMeta().GetClientId(), cmd.GetMeta().GetRequestId()
	op := opOf(&cmd)
	if client != "" {
		if res, was, ok := f.dedupe.lookup(client, req, f.elapsed); ok {
			if was != 0 && was != op || was == 0 && !resultFits(&cmd, res) {
				return ErrorResult(errs.Wrapf(ErrRequestIDReused, "client %q used request ID %d for another kind of write", client, req))
			}
			return res
		}
	}
	res := f.dispatch(index, &cmd)
	f.locks.Settle()
	if client != "" {
		f.dedupe.remember(client, req, op, res, f.elapsed)
	}
	return res
}

// The oneofs of a command and of its result: a command's result is the
// field of the command's number, or Empty when the result has none.
var (
	commandOps  = (&internalv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	resultKinds = (&internalv1.Result{}).ProtoReflect().Descriptor().Oneofs().ByName("result")
	resultError = resultKinds.Fields().ByName("error").Number()
	resultEmpty = resultKinds.Fields().ByName("empty").Number()
)

// opNumbers maps the Go type of each Command.op wrapper to its field
// number: found once by reflection, it costs a map lookup per command where
// WhichOneof cost 125 ns.
var opNumbers = func() map[reflect.Type]uint8 {
	out := map[reflect.Type]uint8{}
	fields := commandOps.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		cmd := &internalv1.Command{}
		m := cmd.ProtoReflect()
		m.Set(fd, m.NewField(fd))
		out[reflect.TypeOf(cmd.GetOp())] = uint8(fd.Number())
	}
	return out
}()

// opOf is the field number of cmd's operation, 0 for none; the numbers of
// Command.op are below 256.
func opOf(cmd *internalv1.Command) uint8 {
	if cmd.GetOp() == nil {
		return 0
	}
	return opNumbers[reflect.TypeOf(cmd.GetOp())]
}

// resultFits reports whether res, remembered for cmd's request ID by a
// snapshot that did not keep the operation, can be cmd's own result: an
// error, or the kind of result cmd's kind yields (kinds whose result is
// Empty are not told apart). A client that reused a request ID for another
// write (a Txn after a Put) was answered with the other write's result,
// read as an empty answer.
func resultFits(cmd *internalv1.Command, res *internalv1.Result) bool {
	got := res.ProtoReflect().WhichOneof(resultKinds)
	if got == nil || got.Number() == resultError {
		return true
	}
	op := cmd.ProtoReflect().WhichOneof(commandOps)
	if op == nil {
		return false
	}
	want := op.Number()
	if resultKinds.Fields().ByNumber(want) == nil {
		want = resultEmpty
	}
	return got.Number() == want
}

func header(index uint64) *concordv1.ResponseHeader {
	return &concordv1.ResponseHeader{Revision: index}
}

func (f *FSM) dispatch(index uint64, cmd *internalv1.Command) *internalv1.Result {
	switch op := cmd.GetOp().(type) {
	case *internalv1.Command_Put:
		resp, evs, err := f.kv.Put(index, op.Put)
		if err != nil {
			return ErrorResult(err)
		}
		f.pending = append(f.pending, evs...)
		resp.Header = header(index)
		return &internalv1.Result{Result: &internalv1.Result_Put{Put: resp}}
	case *internalv1.Command_DeleteRange:
		resp, evs, err := f.kv.DeleteRange(index, op.DeleteRange)
		if err != nil {
			return ErrorResult(err)
		}
		f.pending = append(f.pending, evs...)
		resp.Header = header(index)
		return &internalv1.Result{Result: &internalv1.Result_DeleteRange{DeleteRange: resp}}
	case *internalv1.Command_Txn:
		resp, evs, err := f.kv.Txn(index, op.Txn, TxnReadLimits)
		if err != nil {
			return ErrorResult(err)
		}
		f.pending = append(f.pending, evs...)
		resp.Header = header(index)
		return &internalv1.Result{Result: &internalv1.Result_Txn{Txn: resp}}
	case *internalv1.Command_Add:
		resp, evs, err := f.kv.Add(index, op.Add)
		if err != nil {
			return ErrorResult(err)
		}
		f.pending = append(f.pending, evs...)
		resp.Header = header(index)
		return &internalv1.Result{Result: &internalv1.Result_Add{Add: resp}}
	case *internalv1.Command_CreateSession:
		ttl := op.CreateSession.GetTtlMs()
		if ttl <= 0 {
			return ErrorResult(errs.Wrapf(session.ErrTTLOutOfRange, "ttl %d ms is not positive", ttl))
		}
		s := f.sessions.Create(index, ttl, op.CreateSession.GetName(), f.now/1e6)
		return &internalv1.Result{Result: &internalv1.Result_CreateSession{CreateSession: &concordv1.CreateSessionResponse{
			Header: header(index), Id: s.ID, TtlMs: s.TTLMillis,
		}}}
	case *internalv1.Command_RevokeSession:
		n, err := f.sessions.End(index, op.RevokeSession.GetId())
		if err != nil {
			return ErrorResult(errs.Wrapf(session.ErrNotFound, "session %d", op.RevokeSession.GetId()))
		}
		return &internalv1.Result{Result: &internalv1.Result_RevokeSession{RevokeSession: &concordv1.RevokeSessionResponse{
			Header: header(index), KeysDeleted: n,
		}}}
	case *internalv1.Command_ExpireSessions:
		ids := slices.Clone(op.ExpireSessions.GetIds())
		slices.Sort(ids)
		for _, id := range ids {
			if _, err := f.sessions.End(index, id); err == nil {
				f.cfg.Logger.Debug("session expired", "session", id, "index", index)
				if m := f.cfg.Metrics; m != nil {
					m.sessionsExpired.Inc()
				}
			}
		}
		return emptyResult()
	case *internalv1.Command_PublishMember:
		p := op.PublishMember
		if p.GetId() == "" {
			return ErrorResult(errs.Wrapf(ErrBadCommand, "member without id"))
		}
		f.members.Publish(member.Member{ID: p.GetId(), Name: p.GetName(), PeerAddr: p.GetPeerAddr(), ClientAddr: p.GetClientAddr()})
		return emptyResult()
	case *internalv1.Command_RetireMember:
		if op.RetireMember.GetId() == "" {
			// It would store a member record every later restore of a
			// snapshot refuses as corrupt.
			return ErrorResult(errs.Wrapf(ErrBadCommand, "retire a member without id"))
		}
		f.members.Retire(op.RetireMember.GetId())
		return emptyResult()
	case *internalv1.Command_Noop:
		return emptyResult()
	case *internalv1.Command_RaiseRules:
		// A version above this build's was refused by applyCommand.
		if v := op.RaiseRules.GetVersion(); v > f.rules {
			f.cfg.Logger.Info("rules version raised", "from", f.rules, "to", v, "index", index)
			f.rules = v
		}
		return emptyResult()
	case *internalv1.Command_SetClusterId:
		id := op.SetClusterId.GetId()
		switch {
		case f.rules < RulesClusterID:
			// As a member of a release before the entry, which does not
			// know it: nothing changes.
			return ErrorResult(errs.Wrapf(ErrBadCommand, "unknown command at index %d", index))
		case !ValidClusterID(id):
			return ErrorResult(errs.Wrapf(ErrBadCommand, "cluster ID %q is not %d hex digits", id, clusterIDHexLen))
		case f.clusterID == "":
			f.cfg.Logger.Info("cluster ID set", "cluster_id", id, "index", index)
			f.setClusterID(id)
		}
		return emptyResult()
	case *internalv1.Command_LockAcquire,
		*internalv1.Command_LockRelease,
		*internalv1.Command_LockCancel,
		*internalv1.Command_LockForceRelease,
		*internalv1.Command_LockExpireHolds,
		*internalv1.Command_LockCheckpointHolds:
		return f.applyLock(index, cmd)
	case *internalv1.Command_IdLeaseWorker,
		*internalv1.Command_IdReserveWorker,
		*internalv1.Command_IdReleaseWorker,
		*internalv1.Command_IdCreateTag,
		*internalv1.Command_IdAllocSegment,
		*internalv1.Command_IdNextSequence:
		return f.applyIDs(index, cmd)
	default:
		return ErrorResult(errs.Wrapf(ErrBadCommand, "unknown command at index %d", index))
	}
}

func emptyResult() *internalv1.Result {
	return &internalv1.Result{Result: &internalv1.Result_Empty{Empty: &internalv1.Empty{}}}
}

// ErrorResult encodes an error as a command result.
func ErrorResult(err error) *internalv1.Result {
	return &internalv1.Result{Result: &internalv1.Result_Error{Error: &internalv1.Error{
		Reason:  errs.ReasonOf(err, "INTERNAL"),
		Message: err.Error(),
	}}}
}

// ResultError returns the error a result carries, rebuilt around the local
// sentinel, or nil.
func ResultError(res *internalv1.Result) error {
	e := res.GetError()
	if e == nil {
		return nil
	}
	return errs.Rebuild(e.GetReason(), e.GetMessage())
}

// Snapshot captures the state for Raft. It implements
// raftnode.StateMachine.
func (f *FSM) Snapshot() (raftnode.Snapshot, error) {
	if err := f.Halted(); err != nil {
		// The state is not the one of the index Raft would record.
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return f.capture(), nil
}

// Restore replaces the state with a snapshot. It implements
// raftnode.StateMachine. The snapshot is decoded into fresh structures
// first, so a corrupt snapshot leaves the current state untouched.
func (f *FSM) Restore(rc io.Reader) error {
	start := time.Now()
	st := newStaging()
	hdr, err := decodeSnapshot(rc, st, f.cfg.MaxRulesVersion)
	if err != nil {
		err = fmt.Errorf("fsm restore: %w", err)
		if errors.Is(err, ErrRulesTooNew) {
			f.mu.Lock()
			wasHalted := f.halted != nil
			if !wasHalted {
				f.halted = err
			}
			f.mu.Unlock()
			if !wasHalted {
				f.halt(err)
			}
		}
		return err
	}
	f.mu.Lock()
	f.kv.Adopt(st.kv)
	f.locks.Adopt(st.locks)
	f.ids.Adopt(st.ids)
	f.sessions.Restore(st.sessions.List())
	*f.members = *st.members
	*f.dedupe = *st.dedupe
	f.now = hdr.GetTimeUnixNano()
	f.rules = rulesOf(hdr)
	f.setClusterID(hdr.GetClusterId())
	f.lastSweep = hdr.GetLastSweepIndex()
	f.elapsed, f.stampTerm, f.stampNanos = hdr.GetElapsedNanos(), hdr.GetLastStampTerm(), hdr.GetLastStampNanos()
	f.pending = nil
	// Under the lock, with the state: a read must never see the restored
	// state beside the old index (a header older than what it shows).
	f.applied.Store(hdr.GetIndex())
	f.mu.Unlock()
	f.history.Reset(hdr.GetIndex())
	f.setApplied(hdr.GetIndex())
	if m := f.cfg.Metrics; m != nil {
		m.restoreSeconds.Observe(time.Since(start).Seconds())
	}
	f.cfg.Logger.Info("state machine restored from snapshot", "index", hdr.GetIndex(), "duration", time.Since(start))
	return nil
}
