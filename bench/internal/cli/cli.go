// Package cli holds what the bench commands share around their flags: the
// main function, list flags, the Redis address and the -json output.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Main is a command's main function: it parses the command line with parse
// and runs run under a context that ends on SIGINT or SIGTERM. Errors are
// printed prefixed with name; a parse error exits 2, a run error 1.
func Main[O any](name string, parse func(args []string) (O, error), run func(ctx context.Context, o O) error) {
	o, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Split splits a comma-separated list, trimming space and dropping empty
// elements.
func Split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Ints parses the comma-separated list s of flag into positive integers.
// what describes one element in errors: `-nodes: "x" is not a cluster size`.
func Ints(flag, what, s string) ([]int, error) {
	var out []int
	for _, f := range Split(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not %s", flag, f, what)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %q is not %s", flag, s, what)
	}
	return out, nil
}

// Select returns the elements of all that the comma-separated list s of
// flag names, in the order s names them; name gives an element's name and
// what describes one in errors: `-systems: unknown system "x"`.
func Select[T any](flag, what, s string, all []T, name func(T) string) ([]T, error) {
	var out []T
	for _, f := range Split(s) {
		i := slices.IndexFunc(all, func(t T) bool { return name(t) == f })
		if i < 0 {
			return nil, fmt.Errorf("%s: unknown %s %q", flag, what, f)
		}
		out = append(out, all[i])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: unknown %s %q", flag, what, s)
	}
	return out, nil
}

// RedisAddr is the default Redis address of the commands that compare with
// Redis: $CONCORD_BENCH_REDIS, or 127.0.0.1:6379.
func RedisAddr() string {
	if addr := os.Getenv("CONCORD_BENCH_REDIS"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// WriteJSON writes v, indented, to the file at path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
