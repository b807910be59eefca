package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Target is a server binary to build from source.
type Target struct {
	// Name names the binary and the progress and error messages.
	Name string
	// Pkg is given to `go build`, which runs in Dir, relative to the
	// repository root.
	Pkg, Dir string
}

// Build runs `go build -o out pkg` in dir, its output going to stderr.
func Build(ctx context.Context, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// BuildAll builds every target, from the repository at root, into a new
// temporary directory. It returns the binaries' paths by target name and a
// function that removes them; on error nothing is left behind.
func BuildAll(ctx context.Context, root string, targets []Target) (bins map[string]string, remove func(), err error) {
	binDir, err := os.MkdirTemp("", "bench-bin-")
	if err != nil {
		return nil, nil, err
	}
	remove = func() { _ = os.RemoveAll(binDir) }
	bins = map[string]string{}
	for _, t := range targets {
		out := filepath.Join(binDir, t.Name)
		fmt.Fprintf(os.Stderr, "building %s (%s)\n", t.Name, t.Pkg)
		if err := Build(ctx, filepath.Join(root, t.Dir), t.Pkg, out); err != nil {
			remove()
			return nil, nil, fmt.Errorf("build %s: %w", t.Name, err)
		}
		bins[t.Name] = out
	}
	return bins, remove, nil
}
