package kv

import (
	"bytes"

	"github.com/google/btree"
)

const btreeDegree = 32

// slot is one entry of the index: the key next to its item, so that a
// descent compares keys held in the node itself instead of loading every
// item it passes (a cache miss per comparison on a busy member).
type slot struct {
	key []byte
	it  *Item
}

func slotLess(a, b slot) bool { return bytes.Compare(a.key, b.key) < 0 }

// index is the store's ordered map from key to item. A slot's key is its
// item's Key.
type index struct{ t *btree.BTreeG[slot] }

func newIndex() *index { return &index{t: btree.NewG(btreeDegree, slotLess)} }

// Len returns the number of items.
func (x *index) Len() int { return x.t.Len() }

// Get returns the item at key.
func (x *index) Get(key []byte) (*Item, bool) {
	s, ok := x.t.Get(slot{key: key})
	return s.it, ok
}

// ReplaceOrInsert stores it and returns the item it replaced, if any.
func (x *index) ReplaceOrInsert(it *Item) (*Item, bool) {
	s, ok := x.t.ReplaceOrInsert(slot{key: it.Key, it: it})
	return s.it, ok
}

// Delete removes the item at key.
func (x *index) Delete(key []byte) { x.t.Delete(slot{key: key}) }

// Clone returns a lazy copy: both share nodes until either writes.
func (x *index) Clone() *index { return &index{t: x.t.Clone()} }

// Ascend visits every item in key order until visit returns false.
func (x *index) Ascend(visit func(*Item) bool) {
	x.t.Ascend(func(s slot) bool { return visit(s.it) })
}

// AscendGreaterOrEqual visits the items from key on.
func (x *index) AscendGreaterOrEqual(key []byte, visit func(*Item) bool) {
	x.t.AscendGreaterOrEqual(slot{key: key}, func(s slot) bool { return visit(s.it) })
}

// AscendRange visits the items in [start, end).
func (x *index) AscendRange(start, end []byte, visit func(*Item) bool) {
	x.t.AscendRange(slot{key: start}, slot{key: end}, func(s slot) bool { return visit(s.it) })
}
