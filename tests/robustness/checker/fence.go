package checker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// KindFenceRead reads the fenced list linearizably (Value; Found false
// when the list does not exist yet).
const KindFenceRead history.Kind = "fence-read"

// FenceEntry is the list element a fenced append by writer under token
// adds: "writer@token;". The list is the concatenation of its elements.
func FenceEntry(writer string, token uint64) string { return fmt.Sprintf("%s@%d;", writer, token) }

// FenceItem is one element of a fenced list.
type FenceItem struct {
	Entry string // the element, "writer@token;"
	Token uint64
}

// ParseFenceList splits a fenced list into its elements.
func ParseFenceList(list string) ([]FenceItem, error) {
	var items []FenceItem
	for rest := list; rest != ""; {
		i := strings.IndexByte(rest, ';')
		if i < 0 {
			return items, fmt.Errorf("unterminated element %q at offset %d", rest, len(list)-len(rest))
		}
		e := rest[:i+1]
		rest = rest[i+1:]
		at := strings.LastIndexByte(e, '@')
		if at < 0 {
			return items, fmt.Errorf("element %q has no token", e)
		}
		tok, err := strconv.ParseUint(e[at+1:len(e)-1], 10, 64)
		if err != nil {
			return items, fmt.Errorf("element %q: %w", e, err)
		}
		items = append(items, FenceItem{Entry: e, Token: tok})
	}
	return items, nil
}

// CheckFence checks the fenced-resource workload: clients append to a
// shared list, kept in one key, each under a mutex, by reading the list
// and writing it back with their element through a transaction fenced with
// the grant's token (KindFencedWrite: Value is the list written, Entry the
// element added). final is the list read linearizably after the heal.
//
//   - nothing lost, nothing twice: the written list of every acknowledged
//     append (and of every append whose element is in the final list) is a
//     prefix of the final list, so its element is there once, at the place
//     it was appended; no element appears twice;
//   - nothing invented, nothing refused: every element of the final list
//     was appended by an append that was acknowledged or of unknown
//     outcome, never by one whose fenced transaction was refused;
//   - tokens never go back: the tokens of the final list's elements never
//     decrease, acknowledged appends ordered by revision carry
//     non-decreasing tokens, and each applied at a revision above its
//     token (after its grant);
//   - acknowledgement order: an append acknowledged before another append
//     was invoked comes before it in the list;
//   - reads: every list read is a prefix of the final list, and contains
//     every append acknowledged, and every element another read saw,
//     before the read was invoked.
func CheckFence(ops []history.Op, final string) (Stats, []Violation) {
	var (
		stats      Stats
		violations []Violation
	)
	report := func(summary string, involved ...history.Op) {
		if len(violations) >= 20 {
			return
		}
		var details string
		for _, o := range involved {
			details += o.String() + "\n"
		}
		violations = append(violations, Violation{Checker: "fence", Summary: summary, Details: details})
	}
	items, err := ParseFenceList(final)
	if err != nil {
		report(fmt.Sprintf("the final list does not parse: %v", err))
	}
	pos := map[string]int{}
	for i, it := range items {
		stats.Checked++
		if j, dup := pos[it.Entry]; dup {
			report(fmt.Sprintf("element %q appears twice in the final list, at %d and %d", it.Entry, j, i))
			continue
		}
		pos[it.Entry] = i
		if i > 0 && it.Token < items[i-1].Token {
			report(fmt.Sprintf("token went back in the final list: element %d %q follows %q", i, it.Entry, items[i-1].Entry))
		}
	}

	writes := map[string]history.Op{}
	var ordered, acked []history.Op // by invocation
	for _, o := range ops {
		if o.Kind != KindFencedWrite || o.Entry == "" {
			continue
		}
		writes[o.Entry] = o
		ordered = append(ordered, o)
		if o.Status == history.OK && o.Succeeded {
			acked = append(acked, o)
		}
	}
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Call < ordered[j].Call })
	for _, it := range items {
		w, ok := writes[it.Entry]
		switch {
		case !ok:
			report(fmt.Sprintf("element %q of the final list was never appended", it.Entry))
		case w.Status == history.OK && !w.Succeeded:
			report(fmt.Sprintf("element %q is in the final list although its fenced write was refused", it.Entry), w)
		case w.Status == history.Fail:
			report(fmt.Sprintf("element %q is in the final list although its write certainly failed", it.Entry), w)
		}
	}
	for _, w := range ordered {
		_, present := pos[w.Entry]
		acknowledged := w.Status == history.OK && w.Succeeded
		if !acknowledged && !present {
			continue
		}
		stats.Checked++
		if !strings.HasPrefix(final, w.Value) {
			what := "acknowledged append"
			if !acknowledged {
				what = "append of unknown outcome"
			}
			report(fmt.Sprintf("%s %q is not where it was appended: the list it wrote (%d elements) is not a prefix of the final list (%d elements)",
				what, w.Entry, strings.Count(w.Value, ";"), len(items)), w)
		}
		if acknowledged && w.Rev <= w.Token {
			report(fmt.Sprintf("fenced write %q applied at revision %d, not above its grant's token %d", w.Entry, w.Rev, w.Token), w)
		}
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].Rev < acked[j].Rev })
	for i := 1; i < len(acked); i++ {
		if acked[i].Token < acked[i-1].Token {
			report(fmt.Sprintf("token went back: fenced write at revision %d under token %d follows one at revision %d under token %d",
				acked[i].Rev, acked[i].Token, acked[i-1].Rev, acked[i-1].Token), acked[i-1], acked[i])
		}
	}

	// Real-time order: every append acknowledged, and every element a
	// read saw, before an append or a read was invoked precedes it (an
	// append of unknown outcome is no evidence: it may apply after it
	// returned).
	type observer struct {
		op     history.Op
		length int // elements the observer must extend past
	}
	type evidence struct {
		op   history.Op
		need int // elements that existed when op returned
	}
	var (
		observers []observer
		evidences []evidence
	)
	for _, w := range ordered {
		if p, ok := pos[w.Entry]; ok {
			observers = append(observers, observer{w, p})
		}
	}
	for _, a := range acked {
		if p, ok := pos[a.Entry]; ok {
			evidences = append(evidences, evidence{a, p + 1})
		}
	}
	for _, o := range ops {
		if o.Kind != KindFenceRead || o.Status != history.OK {
			continue
		}
		stats.Checked++
		if !strings.HasPrefix(final, o.Value) {
			report(fmt.Sprintf("a read of the list (%d elements) is not a prefix of the final list", strings.Count(o.Value, ";")), o)
			continue
		}
		n := strings.Count(o.Value, ";")
		observers = append(observers, observer{o, n})
		evidences = append(evidences, evidence{o, n})
	}
	sort.SliceStable(evidences, func(i, j int) bool { return evidences[i].op.Return < evidences[j].op.Return })
	sort.SliceStable(observers, func(i, j int) bool { return observers[i].op.Call < observers[j].op.Call })
	next, need := 0, 0
	var because history.Op
	for _, ob := range observers {
		for next < len(evidences) && evidences[next].op.Return < ob.op.Call {
			if e := evidences[next]; e.need > need {
				need, because = e.need, e.op
			}
			next++
		}
		if ob.length >= need {
			continue
		}
		switch {
		case ob.op.Kind == KindFenceRead && because.Kind == KindFenceRead:
			report(fmt.Sprintf("stale read: a read of the list invoked after a read of %d elements returned has only %d elements", need, ob.length), because, ob.op)
		case ob.op.Kind == KindFenceRead:
			report(fmt.Sprintf("stale read: a read of the list invoked after append %q (element %d) was acknowledged has only %d elements",
				because.Entry, need-1, ob.length), because, ob.op)
		case because.Kind == KindFenceRead:
			report(fmt.Sprintf("append %q (element %d) precedes element %d, which a read that returned before it was invoked saw",
				ob.op.Entry, ob.length, need-1), because, ob.op)
		default:
			report(fmt.Sprintf("append %q (element %d) precedes append %q (element %d), acknowledged before it was invoked",
				ob.op.Entry, ob.length, because.Entry, need-1), because, ob.op)
		}
	}
	return stats, violations
}
