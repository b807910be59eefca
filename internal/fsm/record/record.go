// Package record reads and writes streams of length-prefixed protobuf
// messages, the framing of state machine snapshots.
package record

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// MaxRecordBytes bounds one record, so a corrupt length cannot make a reader
// allocate without limit.
const MaxRecordBytes = 64 << 20

// MaxPrealloc bounds the capacity a reader reserves from a count that a
// stream claims: counts come from the stream (a snapshot file is operator
// input), so past this the slice grows with the records actually read.
const MaxPrealloc = 1024

// ErrCorrupt is returned for a stream that is not a valid record stream.
var ErrCorrupt = errors.New("record: corrupt stream")

// Writer writes records.
type Writer struct {
	w    *bufio.Writer
	opts proto.MarshalOptions
	buf  []byte
	lenb [binary.MaxVarintLen64]byte
}

// NewWriter returns a Writer on w. Messages are marshalled deterministically,
// so equal states give equal bytes.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 256<<10), opts: proto.MarshalOptions{Deterministic: true}}
}

// Write writes one message.
func (w *Writer) Write(m proto.Message) error {
	var err error
	w.buf, err = w.opts.MarshalAppend(w.buf[:0], m)
	if err != nil {
		return err
	}
	n := binary.PutUvarint(w.lenb[:], uint64(len(w.buf)))
	if _, err := w.w.Write(w.lenb[:n]); err != nil {
		return err
	}
	_, err = w.w.Write(w.buf)
	return err
}

// Flush flushes buffered records.
func (w *Writer) Flush() error { return w.w.Flush() }

// Reader reads records.
type Reader struct {
	r   *bufio.Reader
	buf []byte
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 256<<10)} }

// Read reads the next message into m. It returns io.EOF at a clean end of
// stream and ErrCorrupt (wrapped) for anything malformed.
func (r *Reader) Read(m proto.Message) error {
	n, err := binary.ReadUvarint(r.r)
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return fmt.Errorf("%w: length: %v", ErrCorrupt, err)
	}
	if n > MaxRecordBytes {
		return fmt.Errorf("%w: record of %d bytes exceeds %d", ErrCorrupt, n, MaxRecordBytes)
	}
	// Grow the buffer only as data actually arrives, so a corrupt length
	// in a short stream costs nothing.
	r.buf = r.buf[:0]
	for remaining := int(n); remaining > 0; {
		chunk := min(remaining, 1<<20)
		start := len(r.buf)
		r.buf = append(r.buf, make([]byte, chunk)...)
		if _, err := io.ReadFull(r.r, r.buf[start:]); err != nil {
			return fmt.Errorf("%w: truncated record: %v", ErrCorrupt, err)
		}
		remaining -= chunk
	}
	if err := proto.Unmarshal(r.buf, m); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}
