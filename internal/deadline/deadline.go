// Package deadline is a queue of keys ordered by deadline, for the leader's
// timers (session TTLs, lock hold times). It is not safe for concurrent use.
package deadline

import (
	"cmp"
	"container/heap"
	"time"
)

// Queue orders keys by deadline; ties break by key, so the order is
// deterministic.
type Queue[K cmp.Ordered] struct {
	h   items[K]
	pos map[K]*item[K]
}

type item[K cmp.Ordered] struct {
	key   K
	at    time.Time
	index int
}

type items[K cmp.Ordered] []*item[K]

func (q items[K]) Len() int { return len(q) }
func (q items[K]) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].key < q[j].key
	}
	return q[i].at.Before(q[j].at)
}
func (q items[K]) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *items[K]) Push(x any) {
	it := x.(*item[K])
	it.index = len(*q)
	*q = append(*q, it)
}
func (q *items[K]) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	it.index = -1
	return it
}

// New returns an empty queue.
func New[K cmp.Ordered]() *Queue[K] { return &Queue[K]{pos: map[K]*item[K]{}} }

// Len returns the number of keys.
func (q *Queue[K]) Len() int { return len(q.h) }

// Set adds key with deadline at, or moves it there.
func (q *Queue[K]) Set(key K, at time.Time) {
	if it, ok := q.pos[key]; ok {
		it.at = at
		heap.Fix(&q.h, it.index)
		return
	}
	it := &item[K]{key: key, at: at}
	q.pos[key] = it
	heap.Push(&q.h, it)
}

// Get returns key's deadline.
func (q *Queue[K]) Get(key K) (time.Time, bool) {
	it, ok := q.pos[key]
	if !ok {
		return time.Time{}, false
	}
	return it.at, true
}

// Remove drops key.
func (q *Queue[K]) Remove(key K) {
	it, ok := q.pos[key]
	if !ok {
		return
	}
	heap.Remove(&q.h, it.index)
	delete(q.pos, key)
}

// PopDue removes and returns up to max keys whose deadline is not after
// now, earliest first.
func (q *Queue[K]) PopDue(now time.Time, max int) []K {
	var out []K
	for len(q.h) > 0 && len(out) < max && !q.h[0].at.After(now) {
		it := heap.Pop(&q.h).(*item[K])
		delete(q.pos, it.key)
		out = append(out, it.key)
	}
	return out
}

// Next returns the earliest deadline.
func (q *Queue[K]) Next() (time.Time, bool) {
	if len(q.h) == 0 {
		return time.Time{}, false
	}
	return q.h[0].at, true
}

// Clear drops every key.
func (q *Queue[K]) Clear() {
	q.h = nil
	q.pos = map[K]*item[K]{}
}
