package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// BinaryEnv names an environment variable that, when set, points at a
// prebuilt concord binary to use instead of building one.
const BinaryEnv = "CONCORD_BINARY"

// Build compiles the concord binary from the module that contains the
// current directory into dir and returns its path. It honours BinaryEnv.
// The binary is built without the race detector: the members are the
// system under test, the harness is what runs under -race.
func Build(ctx context.Context, dir string) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return p, nil
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	root, err := moduleRoot(ctx, goBin)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "concord")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/concord")
	cmd.Dir = root
	// The test binary may run with -race in GOFLAGS; the members must not.
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/concord in %s: %v\n%s", root, err, stderr.String())
	}
	return out, nil
}

func moduleRoot(ctx context.Context, goBin string) (string, error) {
	cmd := exec.CommandContext(ctx, goBin, "env", "GOMOD")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	// tests/robustness may be run from anywhere inside the main module;
	// the binary's package is at its root.
	return filepath.Dir(mod), nil
}
