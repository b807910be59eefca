// concord: a binary encoding of AppendEntries for NetworkTransport.
//
// Upstream encodes every RPC with reflection-driven msgpack. On a busy
// cluster AppendEntries is nearly all of the peer traffic, and encoding and
// decoding it was about a tenth of a member's CPU. This file gives the
// request and its response a fixed binary layout, written and read without
// reflection, with the entries' data read in place from one buffer.
//
// A leader sends it only to a member that has said it understands it: a
// NetworkTransport of this fork marks every msgpack AppendEntriesResponse it
// sends (AppendEntriesResponse.ConcordBinary), and the sending transport
// remembers the peers that did. Upstream members never set the mark (and
// skip it when decoding, as msgpack does with any field it does not know),
// so they keep receiving msgpack. A failed binary exchange forgets the mark,
// so a peer replaced by an upstream build at the same address is spoken to
// in msgpack again from the next request on.
//
// Frame: the RPC type byte (rpcAppendEntriesBinary), then the body's length
// as a uvarint, then the body. A response to a binary request is a frame
// without the type byte.
//
// Request body: ProtocolVersion, ID, Addr, Term, Leader, PrevLogEntry,
// PrevLogTerm, LeaderCommitIndex, entry count, then per entry Index, Term,
// Type (one byte), Data, Extensions, AppendedAt (Unix nanoseconds, zigzag;
// 0 for the zero time). Integers are uvarints, byte strings a uvarint
// length then the bytes; an empty byte string decodes as nil.
//
// Response body: the error text, ProtocolVersion, ID, Addr, Term, LastLog,
// then one byte of flags (1 Success, 2 NoRetryBackoff).

package raft

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// rpcAppendEntriesBinary is the RPC type byte of a binary AppendEntries.
// Upstream's types count up from 0; this one stays clear of them.
const rpcAppendEntriesBinary uint8 = 0xc0

const (
	// maxBinaryFrame bounds a binary frame's body. A batch is at most
	// MaxAppendEntries entries of the application's largest command.
	maxBinaryFrame = 1 << 30
	// binaryPrealloc is the largest body read into a buffer allocated at
	// its announced size; a larger one grows as its bytes arrive, so a
	// length alone cannot make the reader allocate.
	binaryPrealloc = 1 << 20
	// minBinaryEntry is the fewest bytes an encoded entry takes.
	minBinaryEntry = 6
)

// ErrBinaryFrame is returned for a binary frame that does not decode.
var ErrBinaryFrame = errors.New("raft: malformed binary AppendEntries frame")

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendedAtNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func binaryRequestLen(req *AppendEntriesRequest) int {
	n := uvarintLen(uint64(req.ProtocolVersion)) + bytesLen(req.ID) + bytesLen(req.Addr) +
		uvarintLen(req.Term) + bytesLen(req.Leader) + uvarintLen(req.PrevLogEntry) +
		uvarintLen(req.PrevLogTerm) + uvarintLen(req.LeaderCommitIndex) + uvarintLen(uint64(len(req.Entries)))
	for _, e := range req.Entries {
		n += uvarintLen(e.Index) + uvarintLen(e.Term) + 1 + bytesLen(e.Data) + bytesLen(e.Extensions) +
			uvarintLen(zigzag(appendedAtNanos(e.AppendedAt)))
	}
	return n
}

// binaryWriter writes a frame's fields to a buffered writer; the first
// error sticks.
type binaryWriter struct {
	w   *bufio.Writer
	err error
	tmp [binary.MaxVarintLen64]byte
}

func (b *binaryWriter) uvarint(v uint64) {
	if b.err == nil {
		_, b.err = b.w.Write(binary.AppendUvarint(b.tmp[:0], v))
	}
}

func (b *binaryWriter) bytes(p []byte) {
	b.uvarint(uint64(len(p)))
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
}

func (b *binaryWriter) byte(c byte) {
	if b.err == nil {
		b.err = b.w.WriteByte(c)
	}
}

// writeBinaryRequest writes req as a binary AppendEntries frame, type byte
// included. It does not flush.
func writeBinaryRequest(w *bufio.Writer, req *AppendEntriesRequest) error {
	b := binaryWriter{w: w}
	b.byte(rpcAppendEntriesBinary)
	b.uvarint(uint64(binaryRequestLen(req)))
	b.uvarint(uint64(req.ProtocolVersion))
	b.bytes(req.ID)
	b.bytes(req.Addr)
	b.uvarint(req.Term)
	b.bytes(req.Leader)
	b.uvarint(req.PrevLogEntry)
	b.uvarint(req.PrevLogTerm)
	b.uvarint(req.LeaderCommitIndex)
	b.uvarint(uint64(len(req.Entries)))
	for _, e := range req.Entries {
		b.uvarint(e.Index)
		b.uvarint(e.Term)
		b.byte(byte(e.Type))
		b.bytes(e.Data)
		b.bytes(e.Extensions)
		b.uvarint(zigzag(appendedAtNanos(e.AppendedAt)))
	}
	return b.err
}

// writeBinaryResponse writes the answer to a binary request. It does not
// flush.
func writeBinaryResponse(w *bufio.Writer, rpcErr string, resp *AppendEntriesResponse) error {
	n := bytesLen([]byte(rpcErr)) + uvarintLen(uint64(resp.ProtocolVersion)) + bytesLen(resp.ID) +
		bytesLen(resp.Addr) + uvarintLen(resp.Term) + uvarintLen(resp.LastLog) + 1
	var flags byte
	if resp.Success {
		flags |= 1
	}
	if resp.NoRetryBackoff {
		flags |= 2
	}
	b := binaryWriter{w: w}
	b.uvarint(uint64(n))
	b.bytes([]byte(rpcErr))
	b.uvarint(uint64(resp.ProtocolVersion))
	b.bytes(resp.ID)
	b.bytes(resp.Addr)
	b.uvarint(resp.Term)
	b.uvarint(resp.LastLog)
	b.byte(flags)
	return b.err
}

// readBinaryFrame reads a frame's length and body (the type byte, if any,
// already read).
func readBinaryFrame(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if n > maxBinaryFrame {
		return nil, fmt.Errorf("%w: body of %d bytes, over the %d allowed", ErrBinaryFrame, n, maxBinaryFrame)
	}
	if n <= binaryPrealloc {
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, err
	}
	if uint64(len(body)) != n {
		return nil, io.ErrUnexpectedEOF
	}
	return body, nil
}

// binaryReader reads fields from a frame's body; the first error sticks.
type binaryReader struct {
	b   []byte
	err error
}

func (d *binaryReader) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBinaryFrame, what)
	}
}

func (d *binaryReader) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a byte string in place (it aliases the body), nil if empty.
func (d *binaryReader) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	if n == 0 {
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *binaryReader) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *binaryReader) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d bytes after the last field", len(d.b)))
	}
	return d.err
}

// decodeBinaryRequest decodes a request body. Entries' data and extensions
// alias body.
func decodeBinaryRequest(body []byte) (*AppendEntriesRequest, error) {
	d := binaryReader{b: body}
	req := &AppendEntriesRequest{}
	req.ProtocolVersion = ProtocolVersion(d.uvarint("protocol version"))
	req.ID = d.bytes("id")
	req.Addr = d.bytes("addr")
	req.Term = d.uvarint("term")
	req.Leader = d.bytes("leader")
	req.PrevLogEntry = d.uvarint("previous entry")
	req.PrevLogTerm = d.uvarint("previous term")
	req.LeaderCommitIndex = d.uvarint("commit index")
	n := d.uvarint("entry count")
	if d.err == nil && n > uint64(len(d.b)/minBinaryEntry) {
		d.fail(fmt.Sprintf("%d entries in %d bytes", n, len(d.b)))
	}
	if d.err != nil {
		return nil, d.err
	}
	if n > 0 {
		logs := make([]Log, n)
		req.Entries = make([]*Log, n)
		for i := range logs {
			l := &logs[i]
			l.Index = d.uvarint("entry index")
			l.Term = d.uvarint("entry term")
			l.Type = LogType(d.byte("entry type"))
			l.Data = d.bytes("entry data")
			l.Extensions = d.bytes("entry extensions")
			if at := unzigzag(d.uvarint("entry time")); at != 0 {
				l.AppendedAt = time.Unix(0, at)
			}
			req.Entries[i] = l
		}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeBinaryResponse decodes a response body into resp and returns the
// error text the peer sent.
func decodeBinaryResponse(body []byte, resp *AppendEntriesResponse) (string, error) {
	d := binaryReader{b: body}
	rpcErr := d.bytes("error")
	out := AppendEntriesResponse{}
	out.ProtocolVersion = ProtocolVersion(d.uvarint("protocol version"))
	out.ID = d.bytes("id")
	out.Addr = d.bytes("addr")
	out.Term = d.uvarint("term")
	out.LastLog = d.uvarint("last log")
	flags := d.byte("flags")
	if err := d.done(); err != nil {
		return "", err
	}
	if flags&^3 != 0 {
		return "", fmt.Errorf("%w: unknown flags %#x", ErrBinaryFrame, flags)
	}
	out.Success = flags&1 != 0
	out.NoRetryBackoff = flags&2 != 0
	*resp = out
	return string(rpcErr), nil
}

// readBinaryResponse reads and decodes the answer to a binary request.
func readBinaryResponse(r *bufio.Reader, resp *AppendEntriesResponse) error {
	body, err := readBinaryFrame(r)
	if err != nil {
		return err
	}
	rpcErr, err := decodeBinaryResponse(body, resp)
	if err != nil {
		return err
	}
	if rpcErr != "" {
		return errors.New(rpcErr)
	}
	return nil
}

// binaryPeer reports whether target has said it reads binary
// AppendEntries.
func (n *NetworkTransport) binaryPeer(target ServerAddress) bool {
	if n.noBinary {
		return false
	}
	_, ok := n.binaryPeers.Load(target)
	return ok
}

// noteResponse records what a msgpack AppendEntries response says about
// its sender's encodings, and takes the mark off: it is the transport's
// business, not Raft's.
func (n *NetworkTransport) noteResponse(target ServerAddress, resp any) {
	r, ok := resp.(*AppendEntriesResponse)
	if !ok || !r.ConcordBinary {
		return
	}
	r.ConcordBinary = false
	if !n.noBinary {
		n.binaryPeers.Store(target, struct{}{})
	}
}

// forgetBinary stops binary requests to target until it says again that
// it reads them.
func (n *NetworkTransport) forgetBinary(target ServerAddress) {
	n.binaryPeers.Delete(target)
}
