package checker

import (
	"fmt"
	"strings"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// CheckWatches checks watch streams against the history of writes:
//
//   - order: within a segment, responses and events come in strictly
//     increasing revisions, every event above the previous response's
//     revision and at most its own, and on a watched key;
//   - completeness: every acknowledged write to a watched key whose revision
//     lies within the segment's range [StartRev, EndRev] appears, with the
//     same type and value;
//   - validity: every event is a write some client issued to that key; if
//     the write was acknowledged, at the revision it was acknowledged at,
//     and never a compare-and-swap whose compare was reported to fail;
//   - agreement: watchers that saw the same key at the same revision saw
//     the same event, and a segment whose range and prefix cover an event
//     another watcher delivered delivered it too (so a write of unknown
//     outcome that a watcher skipped is caught);
//   - no event of a write that certainly failed.
//
// ops are the key-value operations of the run (get, put, cas, delete).
func CheckWatches(ops []history.Op, segments []*history.WatchSegment) (Stats, []Violation) {
	var (
		stats      Stats
		violations []Violation
	)
	report := func(summary, details string) {
		if len(violations) >= 50 {
			return
		}
		violations = append(violations, Violation{Checker: "watch", Summary: summary, Details: details})
	}
	type writeKey struct {
		key string
		rev uint64
	}
	acked := map[writeKey]history.Op{}   // acknowledged writes with an effect, by key and revision
	byValue := map[string][]history.Op{} // writes by the value they write
	deletes := map[string][]history.Op{} // delete operations by key
	var ackedList []history.Op
	for _, o := range ops {
		switch o.Kind {
		case KindPut, KindCAS:
			byValue[o.Value] = append(byValue[o.Value], o)
			if o.Status == history.OK && (o.Kind == KindPut || o.Succeeded) {
				acked[writeKey{o.Key, o.Rev}] = o
				ackedList = append(ackedList, o)
			}
		case KindDelete:
			deletes[o.Key] = append(deletes[o.Key], o)
			if o.Status == history.OK && o.Deleted > 0 {
				acked[writeKey{o.Key, o.Rev}] = o
				ackedList = append(ackedList, o)
			}
		}
	}
	seenBy := map[writeKey]history.Event{}
	seenWho := map[writeKey]string{}
	names := make([]string, len(segments))
	delivered := make([]map[writeKey]history.Event, len(segments))
	for i, seg := range segments {
		name := fmt.Sprintf("watcher %d segment %d (prefix %q from revision %d%s)", seg.Watcher, seg.Segment, seg.Prefix, seg.StartRev, endpointNote(seg.Endpoint))
		events := map[writeKey]history.Event{}
		names[i], delivered[i] = name, events
		prev := seg.StartRev - 1
		lastEvent := uint64(0)
		for _, r := range seg.Resps {
			if len(r.Events) == 0 {
				continue
			}
			if r.Revision <= prev {
				report(name+": responses out of order", fmt.Sprintf("response at revision %d after one at %d", r.Revision, prev))
			}
			for _, ev := range r.Events {
				stats.Checked++
				k := writeKey{ev.Key, ev.Rev}
				switch {
				case ev.Rev <= prev || ev.Rev > r.Revision:
					report(name+": event outside its response's range", fmt.Sprintf("event %s %q at %d in the response (%d, %d]", ev.Type, ev.Key, ev.Rev, prev, r.Revision))
				case ev.Rev < lastEvent:
					report(name+": events out of order", fmt.Sprintf("event %s %q at %d after an event at %d", ev.Type, ev.Key, ev.Rev, lastEvent))
				case !strings.HasPrefix(ev.Key, seg.Prefix):
					report(name+": event on an unwatched key", fmt.Sprintf("event %s %q at %d", ev.Type, ev.Key, ev.Rev))
				}
				if _, dup := events[k]; dup {
					report(name+": event delivered twice", fmt.Sprintf("event %s %q at %d", ev.Type, ev.Key, ev.Rev))
				}
				events[k] = ev
				lastEvent = max(lastEvent, ev.Rev)
				if other, ok := seenBy[k]; ok && other != ev {
					report(fmt.Sprintf("watchers disagree on %q at revision %d", ev.Key, ev.Rev),
						fmt.Sprintf("%s: %+v\n%s: %+v", seenWho[k], other, name, ev))
				} else if !ok {
					seenBy[k], seenWho[k] = ev, name
				}
				if msg := validEvent(ev, byValue, deletes, acked[k]); msg != "" {
					report(name+": "+msg, fmt.Sprintf("event %s %q value %q at %d", ev.Type, ev.Key, ev.Value, ev.Rev))
				}
			}
			prev = r.Revision
		}
		end := seg.EndRev()
		for _, w := range ackedList {
			if w.Rev < seg.StartRev || w.Rev > end || !strings.HasPrefix(w.Key, seg.Prefix) {
				continue
			}
			stats.Checked++
			ev, ok := events[writeKey{w.Key, w.Rev}]
			switch {
			case !ok:
				report(name+": acknowledged write missing", fmt.Sprintf("%s %q value %q at revision %d (segment delivered through %d)\n%s", w.Kind, w.Key, w.Value, w.Rev, end, w))
			case w.Kind == KindDelete && ev.Type != "delete":
				report(name+": delete delivered as "+ev.Type, w.String())
			case w.Kind != KindDelete && (ev.Type != "put" || ev.Value != w.Value):
				report(name+": write delivered with another value", fmt.Sprintf("wrote %q, event %s %q\n%s", w.Value, ev.Type, ev.Value, w))
			}
		}
	}
	// Every event one watcher delivered must be in every segment that
	// covers its key and revision: this catches a skipped event of a write
	// of unknown outcome, which the completeness check above cannot know.
	for i, seg := range segments {
		end := seg.EndRev()
		for k, ev := range seenBy {
			if k.rev < seg.StartRev || k.rev > end || !strings.HasPrefix(k.key, seg.Prefix) {
				continue
			}
			if _, ok := acked[k]; ok {
				continue // checked above
			}
			stats.Checked++
			if _, ok := delivered[i][k]; !ok {
				report(names[i]+": missing an event another watcher delivered",
					fmt.Sprintf("event %s %q value %q at %d, delivered by %s (segment delivered through %d)", ev.Type, ev.Key, ev.Value, ev.Rev, seenWho[k], end))
			}
		}
	}
	return stats, violations
}

// validEvent explains why an event matches no write, or returns "".
func validEvent(ev history.Event, byValue map[string][]history.Op, deletes map[string][]history.Op, acked history.Op) string {
	switch ev.Type {
	case "put":
		writes := byValue[ev.Value]
		var onKey []history.Op
		for _, w := range writes {
			if w.Key == ev.Key {
				onKey = append(onKey, w)
			}
		}
		if len(onKey) == 0 {
			return "event of a write nobody issued"
		}
		for _, w := range onKey {
			if w.Status == history.Fail {
				return fmt.Sprintf("event of a write that certainly failed (op %d)", w.ID)
			}
			if w.Status != history.OK {
				return ""
			}
			if w.Kind == KindCAS && !w.Succeeded {
				return fmt.Sprintf("event of a compare-and-swap reported as failed (op %d)", w.ID)
			}
			if w.Rev == ev.Rev {
				return ""
			}
			return fmt.Sprintf("event at another revision than its write's acknowledged %d (op %d)", w.Rev, w.ID)
		}
	case "delete":
		if acked.Kind == KindDelete {
			return ""
		}
		for _, d := range deletes[ev.Key] {
			if d.Status == history.Unknown {
				return ""
			}
		}
		return "delete event no delete explains"
	default:
		return "event of unknown type " + ev.Type
	}
	return ""
}
