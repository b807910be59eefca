package nemesis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/tests/robustness/cluster"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// Entry is one line of a run's fault timeline.
type Entry struct {
	At     int64 // history clock reading
	Lane   Lane
	Step   int
	Kind   Kind
	Phase  string // "start", "heal", "error", "note"
	Detail string
}

// String renders the entry as a timeline line.
func (e Entry) String() string {
	return fmt.Sprintf("%8.3fs %-10s #%-2d %-20s %-5s %s", float64(e.At)/1e9, e.Lane, e.Step, e.Kind, e.Phase, e.Detail)
}

// Timeline records what the nemesis did, on the history's clock.
type Timeline struct {
	clock   *history.Clock
	mu      sync.Mutex
	entries []Entry
}

// NewTimeline returns an empty timeline on clock.
func NewTimeline(clock *history.Clock) *Timeline { return &Timeline{clock: clock} }

// Add records an entry now.
func (t *Timeline) Add(l Lane, step int, k Kind, phase, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, Entry{At: t.clock.Now(), Lane: l, Step: step, Kind: k, Phase: phase, Detail: fmt.Sprintf(format, args...)})
}

// Entries returns the entries so far, in time order.
func (t *Timeline) Entries() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.entries)
	slices.SortStableFunc(out, func(a, b Entry) int { return int(a.At - b.At) })
	return out
}

// Faults returns how many faults started, by kind.
func (t *Timeline) Faults() map[Kind]int {
	out := map[Kind]int{}
	for _, e := range t.Entries() {
		if e.Phase == "start" {
			out[e.Kind]++
		}
	}
	return out
}

// String renders the timeline, one entry per line.
func (t *Timeline) String() string {
	var b strings.Builder
	for _, e := range t.Entries() {
		b.WriteString(e.String() + "\n")
	}
	return b.String()
}

// WriteFile writes the timeline to path.
func (t *Timeline) WriteFile(path string) error {
	return os.WriteFile(path, []byte(t.String()), 0o644)
}

// StopWithin is how long a graceful stop (Stop) may take before the
// nemesis counts it hung and kills the member. The harness runs members
// with --shutdown-timeout 5s, and `concord server` gives up on a stop 5 s
// past that (exit code cli.ExitStopHung, itself a violation); the rest is
// margin for a loaded machine.
const StopWithin = 30 * time.Second

// Nemesis runs a schedule against a cluster.
type Nemesis struct {
	c        *cluster.Cluster
	timeline *Timeline
	logf     func(string, ...any)

	mu         sync.Mutex
	busy       map[int]Lane // members a lane is acting on
	violations []Violation
	refused    int // Raft streams the impostors refused
	stops      map[string]int
}

// StopCounts returns what the graceful stops did: how many exited 0, how
// many exited non-zero within the bound, and the longest, in ms.
func (n *Nemesis) StopCounts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.stops)
}

func (n *Nemesis) noteStop(took time.Duration, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stops == nil {
		n.stops = map[string]int{}
	}
	switch {
	case err == nil:
		n.stops["graceful stops exited 0"]++
	case !errors.Is(err, cluster.ErrStopHung):
		n.stops["graceful stops exited non-zero"]++
	}
	n.stops["longest graceful stop (ms)"] = max(n.stops["longest graceful stop (ms)"], int(took.Milliseconds()))
}

// ImpostorRefusals returns how many Raft streams of the cluster the
// impostors refused, summed over the impostor steps: none would mean the
// cluster never reached them, and their checks proved nothing.
func (n *Nemesis) ImpostorRefusals() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refused
}

// Violation is a safety violation a step found: an impostor's cluster
// that this cluster changed, a graceful stop that hung.
type Violation struct {
	Kind    Kind // the step's fault
	Summary string
}

// violate records a violation the step of kind k found.
func (n *Nemesis) violate(k Kind, format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.violations = append(n.violations, Violation{Kind: k, Summary: fmt.Sprintf(format, args...)})
}

// Violations returns the safety violations the steps found; a step that
// could not run is an error in the timeline, not a violation.
func (n *Nemesis) Violations() []Violation {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.violations)
}

// New returns a nemesis for c recording into timeline.
func New(c *cluster.Cluster, timeline *Timeline, logf func(string, ...any)) *Nemesis {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Nemesis{c: c, timeline: timeline, logf: logf, busy: map[int]Lane{}}
}

// Run runs the schedule from now until every step ran or ctx ends; each
// lane heals the fault it has in progress before Run returns.
func (n *Nemesis) Run(ctx context.Context, s Schedule) {
	start := time.Now()
	lanes := map[Lane][]Step{}
	for _, st := range s {
		lanes[st.Lane] = append(lanes[st.Lane], st)
	}
	var wg sync.WaitGroup
	for l, steps := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.runLane(ctx, l, steps, start)
		}()
	}
	wg.Wait()
}

func (n *Nemesis) runLane(ctx context.Context, l Lane, steps []Step, start time.Time) {
	for _, st := range steps {
		if !sleepUntil(ctx, start.Add(st.At)) {
			return
		}
		heal, err := n.apply(ctx, st)
		if err != nil {
			n.timeline.Add(l, st.Index, st.Kind, "error", "%v", err)
			continue
		}
		sleepUntil(ctx, start.Add(st.At+st.Duration))
		if heal != nil {
			// Heal even when the run is over: with a fresh context.
			hctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			if err := heal(hctx); err != nil {
				n.timeline.Add(l, st.Index, st.Kind, "error", "heal: %v", err)
			}
			cancel()
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// reserve marks member i busy for lane l, if it is free.
func (n *Nemesis) reserve(l Lane, i int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.busy[i]; ok {
		return false
	}
	n.busy[i] = l
	return true
}

func (n *Nemesis) release(i int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.busy, i)
}

// choose picks the member a step targets among the running, free members:
// the leader, a follower, or any, and reserves it.
func (n *Nemesis) choose(ctx context.Context, st Step) (int, error) {
	leader := n.c.Leader(ctx)
	var candidates []int
	for i := 0; i < n.c.Size(); i++ {
		if n.c.Info(i).State != cluster.Running {
			continue
		}
		switch {
		case st.Target == TargetLeader && i != leader:
			continue
		case st.Target == TargetFollower && i == leader:
			continue
		}
		candidates = append(candidates, i)
	}
	if len(candidates) == 0 {
		return -1, fmt.Errorf("no running %s member (leader %d)", st.Target, leader)
	}
	first := int(st.Pick % uint64(len(candidates)))
	for k := range candidates {
		i := candidates[(first+k)%len(candidates)]
		if n.reserve(st.Lane, i) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("every %s candidate %v is busy", st.Target, candidates)
}

func (n *Nemesis) name(i int) string { return n.c.Member(i).Name }

func (n *Nemesis) names(is []int) string {
	var out []string
	for _, i := range is {
		out = append(out, n.name(i))
	}
	return "{" + strings.Join(out, ",") + "}"
}

// restart is the heal of a step that stopped member i: it restarts it on
// its data dir and releases it.
func (n *Nemesis) restart(st Step, i int) func(context.Context) error {
	return func(ctx context.Context) error {
		defer n.release(i)
		if err := n.c.Restart(ctx, i); err != nil {
			return err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "heal", "restarted %s on its data dir (clock %s)", n.name(i), n.c.Info(i).Clock)
		return nil
	}
}

// apply starts a step's fault and returns how to heal it.
func (n *Nemesis) apply(ctx context.Context, st Step) (func(context.Context) error, error) {
	size := n.c.Size()
	switch st.Kind {
	case IsolateLeader, IsolateMember, Minority, MajoritiesRing, Bridge, OneWayLeader, SlowLinks:
		var cut Cut
		switch st.Kind {
		case IsolateLeader, OneWayLeader:
			leader := n.c.Leader(ctx)
			if leader < 0 {
				return nil, errors.New("no leader to target")
			}
			if st.Kind == IsolateLeader {
				cut = IsolateCut(size, leader)
			} else {
				cut = OneWayCut(size, leader)
			}
		case IsolateMember:
			cut = IsolateCut(size, st.Member)
		case Minority:
			cut = MinorityCut(size, st.Pick)
		case MajoritiesRing:
			cut = RingCut(size, st.Pick)
		case Bridge:
			cut = BridgeCut(size, st.Pick)
		case SlowLinks:
			cut = SlowCut(size, st.Pick)
		}
		link := faultnet.Link{Mode: st.Mode}
		if st.Kind == SlowLinks {
			link = faultnet.Link{Delay: st.Delay}
		}
		for _, l := range cut.Links {
			n.c.SetLink(l.From, l.To, link)
		}
		var groups []string
		for _, g := range cut.Groups {
			groups = append(groups, n.names(g))
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "%s links %s groups %s", link.Mode, describeLinks(n, cut.Links), strings.Join(groups, " "))
		return func(context.Context) error {
			n.c.HealNetwork()
			n.timeline.Add(st.Lane, st.Index, st.Kind, "heal", "all links pass")
			return nil
		}, nil

	case Kill:
		i, err := n.choose(ctx, st)
		if err != nil {
			return nil, err
		}
		if err := n.c.Kill(i); err != nil {
			n.release(i)
			return nil, err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "kill -9 %s (%s)", n.name(i), st.Target)
		return n.restart(st, i), nil

	case Stop:
		i, err := n.choose(ctx, st)
		if err != nil {
			return nil, err
		}
		took, err, serr := n.c.Stop(i, StopWithin)
		if serr != nil {
			n.release(i)
			return nil, serr
		}
		n.noteStop(took, err)
		switch {
		case errors.Is(err, cluster.ErrStopHung):
			n.violate(st.Kind, "%v", err)
			n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "SIGTERM %s (%s): %v", n.name(i), st.Target, err)
		case err != nil:
			// A stop that could not drain (a cut-off leader's writes in
			// flight) exits non-zero; that is reported, not a violation.
			n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "SIGTERM %s (%s): stopped in %s, exit: %v", n.name(i), st.Target, took.Round(time.Millisecond), err)
		default:
			n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "SIGTERM %s (%s): stopped in %s", n.name(i), st.Target, took.Round(time.Millisecond))
		}
		return n.restart(st, i), nil

	case Pause:
		i, err := n.choose(ctx, st)
		if err != nil {
			return nil, err
		}
		if err := n.c.Pause(i); err != nil {
			n.release(i)
			return nil, err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "SIGSTOP %s (%s)", n.name(i), st.Target)
		return func(context.Context) error {
			defer n.release(i)
			if err := n.c.Resume(i); err != nil {
				return err
			}
			n.timeline.Add(st.Lane, st.Index, st.Kind, "heal", "SIGCONT %s", n.name(i))
			return nil
		}, nil

	case ClockFastLeader, ClockSlowFollower:
		i, err := n.choose(ctx, st)
		if err != nil {
			return nil, err
		}
		defer n.release(i)
		n.c.SetClock(i, st.Clock)
		if err := n.c.Kill(i); err != nil {
			return nil, err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "restarting %s with clock %s", n.name(i), st.Clock)
		if err := n.c.Restart(ctx, i); err != nil {
			// Restarted by the final heal.
			return nil, err
		}
		if st.Kind == ClockFastLeader {
			err := n.c.Do(ctx, 10*time.Second, 3*time.Second, func(ctx context.Context, cl *client.Client) error {
				_, err := cl.TransferLeader(ctx, n.name(i))
				return err
			})
			if err != nil {
				n.timeline.Add(st.Lane, st.Index, st.Kind, "note", "leadership not handed to %s: %v", n.name(i), err)
			} else {
				n.timeline.Add(st.Lane, st.Index, st.Kind, "note", "leadership handed to %s", n.name(i))
			}
		}
		// The skew stays for the member's lifetime: nothing to heal.
		return nil, nil

	case RemoveReadd:
		i, err := n.choose(ctx, Step{Lane: st.Lane, Target: TargetFollower, Pick: st.Pick})
		if err != nil {
			return nil, err
		}
		old := n.c.Info(i).ID
		if err := n.c.Remove(ctx, i, 20*time.Second); err != nil {
			n.release(i)
			return nil, err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "removed %s (id %s), process killed", n.name(i), old)
		return func(ctx context.Context) error {
			defer n.release(i)
			if err := n.c.Readd(ctx, i, 30*time.Second); err != nil {
				return err
			}
			n.timeline.Add(st.Lane, st.Index, st.Kind, "heal", "re-added %s with an empty data dir", n.name(i))
			err := cluster.Poll(ctx, 30*time.Second, 250*time.Millisecond, func() error {
				ok, err := n.c.Promoted(ctx, i)
				if err == nil && !ok {
					err = errors.New("still a learner")
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("%s not promoted: %w", n.name(i), err)
			}
			n.timeline.Add(st.Lane, st.Index, st.Kind, "note", "%s promoted to voter as %s", n.name(i), n.c.Info(i).ID)
			return nil
		}, nil

	case Move:
		i, err := n.choose(ctx, Step{Lane: st.Lane, Target: TargetFollower, Pick: st.Pick})
		if err != nil {
			return nil, err
		}
		if err := n.c.Kill(i); err != nil {
			n.release(i)
			return nil, err
		}
		from, to, err := n.c.Move(ctx, i, 20*time.Second)
		if err != nil {
			// Back at its old address; the final heal restarts it if
			// this fails.
			rerr := n.c.Restart(ctx, i)
			n.release(i)
			return nil, errors.Join(err, rerr)
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "kill -9 %s (id %s), moved from %s to %s", n.name(i), n.c.Info(i).ID, from, to)
		if err := n.c.Restart(ctx, i); err != nil {
			// Restarted by the final heal.
			n.release(i)
			return nil, err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "note", "restarted %s on its data dir, advertising %s", n.name(i), to)
		return func(ctx context.Context) error {
			defer n.release(i)
			err := cluster.Poll(ctx, 30*time.Second, 250*time.Millisecond, func() error {
				return n.c.Rejoined(ctx, i)
			})
			if err != nil {
				return fmt.Errorf("%s not back at %s: %w", n.name(i), to, err)
			}
			n.timeline.Add(st.Lane, st.Index, st.Kind, "heal", "%s votes at %s as %s", n.name(i), to, n.c.Info(i).ID)
			return nil
		}, nil
	case Impostor:
		return n.impostor(ctx, st)
	}
	return nil, fmt.Errorf("unknown fault %q", st.Kind)
}

// impostor runs an Impostor step: the impostor starts first, so that the
// member is down only while it is impersonated.
func (n *Nemesis) impostor(ctx context.Context, st Step) (func(context.Context) error, error) {
	i, err := n.choose(ctx, Step{Lane: st.Lane, Target: TargetFollower, Pick: st.Pick})
	if err != nil {
		return nil, err
	}
	imp, err := n.c.StartImpostor(ctx, i)
	if err != nil {
		n.release(i)
		return nil, err
	}
	if err := n.c.Kill(i); err != nil {
		imp.Stop()
		n.release(i)
		return nil, err
	}
	n.c.Impersonate(i, imp)
	n.timeline.Add(st.Lane, st.Index, st.Kind, "start", "kill -9 %s; a one-member cluster of its own (ID %s, cluster ID %.8s, term %d) answers at its address",
		n.name(i), imp.Name, imp.Before.GetClusterId(), imp.Before.GetTerm())
	return func(ctx context.Context) error {
		defer n.release(i)
		n.c.Unimpersonate(i)
		if err := imp.Check(ctx); err != nil {
			n.violate(Impostor, "the impostor of %s (a cluster of its own at its address) was changed by this cluster: %v", n.name(i), err)
		}
		refused, err := imp.Refused(ctx)
		imp.Stop()
		if err != nil {
			n.timeline.Add(st.Lane, st.Index, st.Kind, "note", "the impostor's refusals unknown: %v", err)
		} else {
			n.mu.Lock()
			n.refused += refused
			n.mu.Unlock()
			n.timeline.Add(st.Lane, st.Index, st.Kind, "note", "the impostor refused %d Raft connections of this cluster", refused)
		}
		if err := n.c.Restart(ctx, i); err != nil {
			return err
		}
		n.timeline.Add(st.Lane, st.Index, st.Kind, "heal", "impostor stopped; restarted %s on its data dir", n.name(i))
		return nil
	}, nil
}

func describeLinks(n *Nemesis, links []Link) string {
	var out []string
	for _, l := range links {
		out = append(out, n.name(l.From)+"→"+n.name(l.To))
	}
	return strings.Join(out, " ")
}

// Heal undoes every fault still in effect, whatever the lanes left: it
// passes every link, resumes paused members, restarts stopped ones (a
// moved one at its new address) and re-adds removed ones, waiting until
// they are voters again at the address they advertise. Clock skews
// stay: a member's clock is fixed for its process's life.
func (n *Nemesis) Heal(ctx context.Context) error {
	n.c.HealNetwork()
	var errs []error
	for i := 0; i < n.c.Size(); i++ {
		info := n.c.Info(i)
		var err error
		switch info.State {
		case cluster.Paused:
			err = n.c.Resume(i)
		case cluster.Stopped:
			err = n.c.Restart(ctx, i)
		case cluster.Removed:
			err = n.c.Readd(ctx, i, 60*time.Second)
		default:
			continue
		}
		n.timeline.Add("heal", 0, "heal", "heal", "%s was %s: %v", info.Name, info.State, errOK(err))
		errs = append(errs, err)
	}
	for i := 0; i < n.c.Size(); i++ {
		err := cluster.Poll(ctx, 60*time.Second, 250*time.Millisecond, func() error {
			ok, err := n.c.Promoted(ctx, i)
			if errors.Is(err, cluster.ErrNotMember) && n.c.Info(i).State != cluster.Removed {
				// A removal that reported an error but went through
				// (the leader removed itself, say): bring it back.
				n.c.MarkRemoved(i)
				rerr := n.c.Readd(ctx, i, 60*time.Second)
				n.timeline.Add("heal", 0, "heal", "heal", "%s was out of the configuration: re-added: %v", n.name(i), errOK(rerr))
				return errors.Join(err, rerr)
			}
			if err == nil && !ok {
				err = errors.New("still a learner")
			}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s is not a voter: %w", n.name(i), err))
		}
	}
	n.timeline.Add("heal", 0, "heal", "heal", "network healed, every member running and voting")
	return errors.Join(errs...)
}

func errOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
