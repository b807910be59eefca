package nemesis

import (
	"math/rand/v2"
	"sort"
)

// Link is a directed link between member indexes.
type Link struct{ From, To int }

// Cut is a set of directed links to fail, with a description of the
// groups it separates.
type Cut struct {
	Links []Link
	// Groups are the sides for people, e.g. [[0] [1 2]].
	Groups [][]int
}

// between returns every directed link between a and b, both ways.
func between(a, b []int) []Link {
	var out []Link
	for _, x := range a {
		for _, y := range b {
			out = append(out, Link{x, y}, Link{y, x})
		}
	}
	return out
}

func others(n int, except ...int) []int {
	skip := map[int]bool{}
	for _, e := range except {
		skip[e] = true
	}
	var out []int
	for i := 0; i < n; i++ {
		if !skip[i] {
			out = append(out, i)
		}
	}
	return out
}

func perm(n int, pick uint64) []int {
	return rand.New(rand.NewPCG(pick, 0x7e57)).Perm(n)
}

// IsolateCut cuts member m off from every other member.
func IsolateCut(n, m int) Cut {
	rest := others(n, m)
	return Cut{Links: between([]int{m}, rest), Groups: [][]int{{m}, rest}}
}

// MinorityCut cuts a minority of (n-1)/2 members, drawn from pick, off from
// the rest.
func MinorityCut(n int, pick uint64) Cut {
	p := perm(n, pick)
	minority := append([]int(nil), p[:(n-1)/2]...)
	sort.Ints(minority)
	rest := others(n, minority...)
	return Cut{Links: between(minority, rest), Groups: [][]int{minority, rest}}
}

// RingCut arranges the members on a ring drawn from pick and lets each reach
// only its two neighbours. With 5 members each sees a majority (itself and
// two others) and no two see the same one. With fewer than 5 it cuts
// nothing.
func RingCut(n int, pick uint64) Cut {
	p := perm(n, pick)
	pos := make([]int, n)
	for i, m := range p {
		pos[m] = i
	}
	var links []Link
	for a := 0; a < n; a++ {
		for b := 0; b < n; b++ {
			if a == b {
				continue
			}
			d := (pos[a] - pos[b] + n) % n
			if d != 1 && d != n-1 {
				links = append(links, Link{a, b})
			}
		}
	}
	return Cut{Links: links, Groups: [][]int{p}}
}

// BridgeCut splits the members other than a bridge (drawn from pick) into
// two halves that cannot reach each other; the bridge reaches both.
func BridgeCut(n int, pick uint64) Cut {
	p := perm(n, pick)
	bridge := p[0]
	half := (n - 1) / 2
	a := append([]int(nil), p[1:1+half]...)
	b := append([]int(nil), p[1+half:]...)
	sort.Ints(a)
	sort.Ints(b)
	return Cut{Links: between(a, b), Groups: [][]int{a, {bridge}, b}}
}

// OneWayCut drops every link from the leader to the others, keeping the
// reverse direction.
func OneWayCut(n, leader int) Cut {
	var links []Link
	for _, f := range others(n, leader) {
		links = append(links, Link{leader, f})
	}
	return Cut{Links: links, Groups: [][]int{{leader}, others(n, leader)}}
}

// SlowCut picks about half the directed links, drawn from pick.
func SlowCut(n int, pick uint64) Cut {
	rng := rand.New(rand.NewPCG(pick, 0x510))
	var links []Link
	for a := 0; a < n; a++ {
		for b := 0; b < n; b++ {
			if a != b && rng.IntN(2) == 0 {
				links = append(links, Link{a, b})
			}
		}
	}
	return Cut{Links: links}
}
