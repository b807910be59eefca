package kv

import (
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// itemOverhead approximates the bytes an item costs beyond its key and
// value, for the state size reported in metrics and checked by quotas.
const itemOverhead = 64

// Item is one stored key. Items are immutable once stored.
type Item struct {
	Key       []byte
	Value     []byte
	CreateRev uint64
	ModRev    uint64
	Version   int64
	Session   int64
}

// Size is the item's accounted size in bytes.
func (it *Item) Size() int64 { return SizeOf(len(it.Key), len(it.Value)) }

// SizeOf is the accounted size of an item with a key and a value of these
// lengths, as quotas count it.
func SizeOf(keyLen, valueLen int) int64 { return int64(keyLen + valueLen + itemOverhead) }

// Proto converts the item for the API.
func (it *Item) Proto(keysOnly bool) *concordv1.KeyValue {
	kv := &concordv1.KeyValue{
		Key:            it.Key,
		CreateRevision: it.CreateRev,
		ModRevision:    it.ModRev,
		Version:        it.Version,
		Session:        it.Session,
	}
	if !keysOnly {
		kv.Value = it.Value
	}
	return kv
}

// ItemFromProto converts a snapshot record back into an item.
func ItemFromProto(kv *concordv1.KeyValue) *Item {
	return &Item{
		Key:       kv.GetKey(),
		Value:     kv.GetValue(),
		CreateRev: kv.GetCreateRevision(),
		ModRev:    kv.GetModRevision(),
		Version:   kv.GetVersion(),
		Session:   kv.GetSession(),
	}
}

// EventType is the kind of change an event records.
type EventType uint8

const (
	// EventPut records a created or updated key.
	EventPut EventType = iota + 1
	// EventDelete records a deleted key.
	EventDelete
)

// Event is one change of one key at one revision.
type Event struct {
	Rev  uint64
	Type EventType
	// Item is the key after a put; for a delete it is the deleted item.
	Item *Item
	// Prev is the item before the change, nil if the key did not exist.
	Prev *Item
}

// Proto converts the event for the API.
func (e Event) Proto(withPrev bool) *concordv1.Event {
	out := &concordv1.Event{}
	switch e.Type {
	case EventPut:
		out.Type = concordv1.Event_TYPE_PUT
		out.Kv = e.Item.Proto(false)
	case EventDelete:
		out.Type = concordv1.Event_TYPE_DELETE
		out.Kv = &concordv1.KeyValue{Key: e.Item.Key, ModRevision: e.Rev}
	}
	if withPrev && e.Prev != nil {
		out.PrevKv = e.Prev.Proto(false)
	}
	return out
}

func (e Event) size() int64 {
	n := int64(64)
	if e.Item != nil {
		n += e.Item.Size()
	}
	if e.Prev != nil {
		n += e.Prev.Size()
	}
	return n
}
