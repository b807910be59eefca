package workload

import (
	"context"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// grantTracker follows one grant for the loss-notice checker
// (checker.CheckLossNotice): when its Lost channel closes, and when its
// holder gives it up.
type grantTracker struct {
	env  *Env
	sess *client.Session
	t    *history.GrantTrack
}

// trackGrant records g (its Call, Granted and identity filled in) and
// follows the end of ctx, the grant's context, through onEnd: a function
// that runs its argument once ctx has ended. For a *client.Grant that is
// AfterEnd, which runs in the call that ends the grant, so the time
// recorded is when the SDK ended it, not when a goroutine woke up to see
// it.
func trackGrant(env *Env, sess *client.Session, g history.Grant, ctx context.Context, onEnd func(func())) *grantTracker {
	g.Session = sessionID(sess)
	if sess != nil {
		g.TTL = sess.TTL().Milliseconds()
	}
	tr := &grantTracker{env: env, sess: sess, t: env.Recorder.TrackGrant(g)}
	onEnd(func() {
		at := env.Recorder.Now()
		tr.t.Lost(at, errText(context.Cause(ctx)), deadline(env, sess))
	})
	return tr
}

// trackSDKGrant tracks a *client.Grant (see trackGrant).
func trackSDKGrant(env *Env, sess *client.Session, g history.Grant, sg *client.Grant) *grantTracker {
	return trackGrant(env, sess, g, sg.Context(), func(f func()) { sg.AfterEnd(f) })
}

// end records that the holder gives the grant up now: it is about to
// invoke its release or a conversion.
func (tr *grantTracker) end() {
	if tr == nil {
		return
	}
	tr.t.End(tr.env.Recorder.Now(), deadline(tr.env, tr.sess))
}

// endAt records that the holder gave the grant up at at (a reading of the
// run's clock).
func (tr *grantTracker) endAt(at int64) {
	if tr == nil {
		return
	}
	tr.t.End(at, deadline(tr.env, tr.sess))
}

// released records that the holder's release was acknowledged.
func (tr *grantTracker) released() {
	if tr != nil {
		tr.t.Released()
	}
}
