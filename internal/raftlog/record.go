package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

// A segment file is a header followed by records:
//
//	header:  magic "CNCDSEG1" (8 bytes) | base index (8, big endian)
//	record:  payload length (4) | CRC-32C of the payload (4) | payload
//	payload: index (8) | term (8) | type (1) | appended at, Unix ns (8)
//	         | data length (4) | data | extensions length (4) | extensions
//
// A record is valid only whole: a torn or zeroed tail fails the length or
// CRC check and marks the end of the log.

const (
	headerSize    = 16
	recordHeader  = 8
	payloadFixed  = 8 + 8 + 1 + 8 + 4 + 4
	segmentMagic  = "CNCDSEG1"
	maxRecordSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of the record decoder.
var (
	// ErrCorrupt is a record or header that fails its checks.
	ErrCorrupt = errors.New("raftlog: corrupt record")
	// ErrTooLarge is an entry above the record size limit.
	ErrTooLarge = errors.New("raftlog: entry too large")
)

func encodeHeader(base uint64) []byte {
	b := make([]byte, headerSize)
	copy(b, segmentMagic)
	binary.BigEndian.PutUint64(b[8:], base)
	return b
}

func decodeHeader(b []byte) (uint64, error) {
	if len(b) < headerSize || string(b[:8]) != segmentMagic {
		return 0, fmt.Errorf("%w: bad segment header", ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b[8:]), nil
}

// recordSize is the encoded size of l.
func recordSize(l *raft.Log) int {
	return recordHeader + payloadFixed + len(l.Data) + len(l.Extensions)
}

// appendRecord appends the encoding of l to b.
func appendRecord(b []byte, l *raft.Log) ([]byte, error) {
	size := recordSize(l)
	if size > maxRecordSize {
		return b, fmt.Errorf("%w: entry %d is %d bytes (limit %d)", ErrTooLarge, l.Index, size, maxRecordSize)
	}
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(size-recordHeader))
	b = binary.BigEndian.AppendUint32(b, 0) // CRC, filled below
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Extensions)))
	b = append(b, l.Extensions...)
	crc := crc32.Checksum(b[start+recordHeader:], castagnoli)
	binary.BigEndian.PutUint32(b[start+4:], crc)
	return b, nil
}

// recordLen reads a record header and returns the payload length and CRC.
// A zero length is the end of written data (a preallocated or zeroed tail).
func recordLen(h []byte) (n int, crc uint32, err error) {
	if len(h) < recordHeader {
		return 0, 0, fmt.Errorf("%w: short record header", ErrCorrupt)
	}
	n = int(binary.BigEndian.Uint32(h))
	if n != 0 && (n < payloadFixed || n > maxRecordSize) {
		return 0, 0, fmt.Errorf("%w: record length %d", ErrCorrupt, n)
	}
	return n, binary.BigEndian.Uint32(h[4:]), nil
}

// decodePayload checks a payload against its CRC and decodes it into out.
// out's Data and Extensions alias p.
func decodePayload(p []byte, crc uint32, out *raft.Log) error {
	if crc32.Checksum(p, castagnoli) != crc {
		return fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if len(p) < payloadFixed {
		return fmt.Errorf("%w: short payload", ErrCorrupt)
	}
	out.Index = binary.BigEndian.Uint64(p)
	out.Term = binary.BigEndian.Uint64(p[8:])
	out.Type = raft.LogType(p[16])
	at := int64(binary.BigEndian.Uint64(p[17:]))
	rest := p[25:]
	dn := int(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if dn > len(rest)-4 {
		return fmt.Errorf("%w: data length %d", ErrCorrupt, dn)
	}
	out.Data = nilIfEmpty(rest[:dn:dn])
	rest = rest[dn:]
	en := int(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if en != len(rest) {
		return fmt.Errorf("%w: extensions length %d", ErrCorrupt, en)
	}
	out.Extensions = nilIfEmpty(rest[:en:en])
	out.AppendedAt = time.Time{}
	if at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
