package kv

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/concord-dev/concord/internal/errs"
)

func compareBytes(a, b []byte) int { return bytes.Compare(a, b) }

func compareInt(a, b int64) int { return cmp.Compare(a, b) }

func sortItems(items []*Item) {
	slices.SortFunc(items, func(a, b *Item) int { return bytes.Compare(a.Key, b.Key) })
}

func errsInvalidRange(detail string) error { return errs.Wrapf(ErrInvalidRange, "%s", detail) }
