package checker

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// partitionBy returns a porcupine partition function that splits a history
// by the name each operation acts on (a key, a lock, a semaphore), in name
// order, each part in history order.
func partitionBy(name func(porcupine.Operation) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(ops []porcupine.Operation) [][]porcupine.Operation {
		byName := map[string][]porcupine.Operation{}
		var names []string
		for _, op := range ops {
			n := name(op)
			if _, ok := byName[n]; !ok {
				names = append(names, n)
			}
			byName[n] = append(byName[n], op)
		}
		sort.Strings(names)
		out := make([][]porcupine.Operation, 0, len(names))
		for _, n := range names {
			out = append(out, byName[n])
		}
		return out
	}
}

// describeMetadata shows an operation's metadata in porcupine's reports.
func describeMetadata(info interface{}) string {
	if info == nil {
		return ""
	}
	return fmt.Sprint(info)
}
