package idgen

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"
)

// UUID is a 128-bit RFC 9562 UUID.
type UUID [16]byte

// String formats the UUID as 8-4-4-4-12 hex digits.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// Time returns the millisecond timestamp of a version 7 UUID.
func (u UUID) Time() time.Time {
	ms := int64(u[0])<<40 | int64(u[1])<<32 | int64(u[2])<<24 | int64(u[3])<<16 | int64(u[4])<<8 | int64(u[5])
	return time.UnixMilli(ms)
}

// UUIDv7 makes RFC 9562 version 7 UUIDs: 48 bits of Unix milliseconds, a
// 12-bit counter (the "fixed bit-length dedicated counter" method, seeded at
// random each millisecond with its top bit clear), then 62 random bits. UUIDs
// from one generator strictly increase, even within a millisecond and when
// the clock goes back (the timestamp then stays put and the counter runs on).
// No coordination is needed: uniqueness across processes rests on the 62
// random bits.
type UUIDv7 struct {
	mu      sync.Mutex
	clock   Clock
	lastMs  int64
	counter uint16
	rng     *rand.ChaCha8
}

// NewUUIDv7 returns a generator seeded from crypto/rand.
func NewUUIDv7() *UUIDv7 { return newUUIDv7(realClock{}) }

func newUUIDv7(c Clock) *UUIDv7 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return &UUIDv7{clock: c, rng: rand.NewChaCha8(seed)}
}

// New returns the next UUID.
func (g *UUIDv7) New() UUID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.clock.Now().UnixMilli()
	switch {
	case ms > g.lastMs:
		g.lastMs = ms
		g.counter = uint16(g.rng.Uint64() & 0x7ff) // top bit clear: room to count
	case g.counter < 0xfff:
		g.counter++
	default:
		// The counter is spent: borrow the next millisecond.
		g.lastMs++
		g.counter = uint16(g.rng.Uint64() & 0x7ff)
	}
	var u UUID
	ts := uint64(g.lastMs)
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ts>>40), byte(ts>>32), byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
	u[6] = 0x70 | byte(g.counter>>8)
	u[7] = byte(g.counter)
	binary.BigEndian.PutUint64(u[8:], g.rng.Uint64())
	u[8] = 0x80 | u[8]&0x3f
	return u
}
