package checker

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// LinearizableOptions tune CheckLinearizable.
type LinearizableOptions struct {
	// Name labels the check and its files, e.g. "kv".
	Name string
	// Timeout bounds the check of one partition; a partition that runs
	// out of time is inconclusive, not a violation. Default 30s.
	Timeout time.Duration
	// VisualizationDir, if set, receives an HTML visualization of every
	// partition found illegal.
	VisualizationDir string
	// PartitionName names a partition for reports and file names; default
	// its index.
	PartitionName func(ops []porcupine.Operation) string
}

// CheckLinearizable checks ops against model with porcupine, one partition
// (for the KV model: one key) at a time. It returns what it checked (the
// partitions and operations, and those of the partitions that timed out)
// and a violation per illegal partition, with a visualization written when
// asked.
func CheckLinearizable(model porcupine.Model, ops []porcupine.Operation, opt LinearizableOptions) (Stats, []Violation) {
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.Name == "" {
		opt.Name = "history"
	}
	parts := [][]porcupine.Operation{ops}
	if model.Partition != nil {
		parts = model.Partition(ops)
	}
	single := model
	single.Partition, single.PartitionEvent = nil, nil
	var (
		stats      Stats
		violations []Violation
	)
	for i, part := range parts {
		if len(part) == 0 {
			continue
		}
		stats.Checked += len(part)
		stats.Partitions++
		name := fmt.Sprintf("partition-%d", i)
		if opt.PartitionName != nil {
			name = opt.PartitionName(part)
		}
		switch porcupine.CheckOperationsTimeout(single, part, opt.Timeout) {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			stats.Inconclusive++
			stats.InconclusiveOps += len(part)
			continue
		}
		res, info := porcupine.CheckOperationsVerbose(single, part, opt.Timeout)
		if res == porcupine.Ok {
			// Not reproducible: cannot happen with a deterministic
			// model, but do not report what the verbose run accepts.
			continue
		}
		v := Violation{
			Checker: "linearizability",
			Summary: fmt.Sprintf("%s: %s: %d operations are not linearizable", opt.Name, name, len(part)),
			Details: explain(single, part, info),
		}
		if opt.VisualizationDir != "" {
			path := filepath.Join(opt.VisualizationDir, fmt.Sprintf("%s-%s.html", opt.Name, fileSafe(name)))
			if err := os.MkdirAll(opt.VisualizationDir, 0o755); err == nil {
				if err := porcupine.VisualizePath(single, info, path); err == nil {
					v.Artifact = path
				}
			}
		}
		violations = append(violations, v)
	}
	return stats, violations
}

// explain shows the end of the longest linearizable prefix porcupine found,
// the state it leads to, and the first operations (by invocation) that
// could not be placed after it.
func explain(model porcupine.Model, part []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var longest []porcupine.Operation
	for _, p := range info.PartialLinearizationsOperations() {
		for _, lin := range p {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	describe := func(op porcupine.Operation) string {
		meta := ""
		if model.DescribeOperationMetadata != nil {
			meta = "  (" + model.DescribeOperationMetadata(op.Metadata) + ")"
		}
		ret := fmt.Sprintf("%.3fs", float64(op.Return)/1e9)
		if op.Return > 1<<62 {
			ret = "open"
		}
		return fmt.Sprintf("[%.3fs, %s] %s%s", float64(op.Call)/1e9, ret, model.DescribeOperation(op.Input, op.Output), meta)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "longest linearizable prefix: %d of %d operations; its last ones:\n", len(longest), len(part))
	for _, op := range longest[max(0, len(longest)-6):] {
		b.WriteString("  " + describe(op) + "\n")
	}
	var s interface{} = model.Init()
	for _, op := range longest {
		_, s = model.Step(s, op.Input, op.Output)
	}
	fmt.Fprintf(&b, "state after it: %s\n", model.DescribeState(s))
	placed := map[string]bool{}
	for _, op := range longest {
		placed[opKey(op)] = true
	}
	var rest []porcupine.Operation
	for _, op := range part {
		if !placed[opKey(op)] {
			rest = append(rest, op)
		}
	}
	sortByCall(rest)
	b.WriteString("operations that cannot follow it (first by invocation):\n")
	for _, op := range rest[:min(len(rest), 6)] {
		b.WriteString("  " + describe(op) + "\n")
	}
	return b.String()
}

func opKey(op porcupine.Operation) string {
	return fmt.Sprintf("%d|%d|%v|%v|%v", op.ClientId, op.Call, op.Input, op.Output, op.Metadata)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileSafe(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// KVPartitionName names a KV partition by its key.
func KVPartitionName(ops []porcupine.Operation) string {
	if len(ops) == 0 {
		return "empty"
	}
	return "key " + ops[0].Input.(KVInput).Key
}

// sortByCall orders operations by invocation.
func sortByCall(ops []porcupine.Operation) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
}
