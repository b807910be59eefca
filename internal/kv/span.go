package kv

import "bytes"

// Span is the set of keys a request names: one key, or the half-open range
// [Start, End), where a nil End means "to the last key".
type Span struct {
	Start  []byte
	End    []byte
	Single bool
}

// allKeys is the range_end that means "every key >= key", as in etcd.
var allKeys = []byte{0}

// SpanOf builds the span of a request from its key, range_end and prefix
// fields. A single-key span needs a non-empty key.
func SpanOf(key, rangeEnd []byte, prefix bool) (Span, error) {
	switch {
	case prefix && len(rangeEnd) > 0:
		return Span{}, errsInvalidRange("prefix and range_end are both set")
	case prefix:
		return Span{Start: key, End: PrefixEnd(key)}, nil
	case len(rangeEnd) == 0:
		if len(key) == 0 {
			return Span{}, ErrEmptyKey
		}
		return Span{Start: key, Single: true}, nil
	case bytes.Equal(rangeEnd, allKeys):
		return Span{Start: key}, nil
	default:
		if bytes.Compare(rangeEnd, key) <= 0 {
			return Span{}, errsInvalidRange("range_end must sort after key")
		}
		return Span{Start: key, End: rangeEnd}, nil
	}
}

// PrefixEnd returns the smallest key greater than every key with the given
// prefix, or nil when there is none (an empty prefix or one of 0xff bytes).
func PrefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Contains reports whether key lies in the span.
func (s Span) Contains(key []byte) bool {
	if s.Single {
		return bytes.Equal(key, s.Start)
	}
	if bytes.Compare(key, s.Start) < 0 {
		return false
	}
	return s.End == nil || bytes.Compare(key, s.End) < 0
}
