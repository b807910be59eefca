package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/testcluster"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runCLI runs the command line in-process and returns its error and output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errb)
	root.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- root.Execute() }()
	select {
	case err := <-done:
		return out.String() + errb.String(), err
	case <-time.After(60 * time.Second):
		t.Fatalf("concord %v did not return", args)
		return "", nil
	}
}

// run is runCLI with separate stdout and stderr.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// startMember runs `concord server` in-process and returns its client
// address; the member stops when the test ends. Its readiness probe sends
// the bearer token "s3cret", for members started with --auth-token s3cret.
func startMember(t *testing.T, extra ...string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	// The member's banner (stdout) and its logs (stderr, from Raft's
	// goroutines) are written at once: one plain buffer for both raced.
	out := &lockedBuffer{}
	root := NewRoot(strings.NewReader(""), out, out)
	root.SetArgs(append([]string{"server", "--data-dir", filepath.Join(t.TempDir(), "d"), "--listen-client", addr,
		"--listen-peer", freeAddr(t), "--log-format", "text", "--log-level", "error"}, extra...))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("member did not stop")
		}
	})
	probe := []string{"kv", "ls", "--endpoints", addr, "--timeout", "2s", "--token", "s3cret"}
	if i := slices.Index(extra, "--tls-cert"); i >= 0 {
		// The tests' certificates are their own CA.
		probe = append(probe, "--cacert", extra[i+1])
	}
	require.Eventually(t, func() bool {
		_, err := runCLI(t, probe...)
		return err == nil
	}, 20*time.Second, 200*time.Millisecond, "the member did not serve:\n%s", out)
	return addr
}

// lockedBuffer is a buffer that several goroutines write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// `concord server` whose client API could not be served (a TLS
// certificate that does not exist: Validate only checks that both flags
// are given) printed its banner, logged "client API stopped", shut down
// and exited 0, so a supervisor with Restart=on-failure did not restart
// it and scripts took it for a clean stop. The key pair is now loaded
// before the member starts, and a client API that stops with an error
// stops the member with a non-zero exit.
func TestServerExitsNonZeroWhenTheClientAPIFails(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, "server", "--data-dir", filepath.Join(dir, "d"), "--listen-client", freeAddr(t), "--listen-peer", freeAddr(t),
		"--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", filepath.Join(dir, "missing.key"), "--log-format", "text")
	require.Error(t, err, "concord server exited 0 although its client API failed:\n%s", out)
	require.ErrorContains(t, err, "missing.pem")
}

// A member serving its client API over TLS printed "try: concord kv put
// greeting hello --endpoints 127.0.0.1:7070": the CLI dials a bare
// host:port in plain HTTP, so the suggested commands failed against it
// ("context deadline exceeded"). They now name the https:// endpoint.
func TestServerBannerSuggestsTheHTTPSEndpointUnderTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testcluster.SelfSigned(t, dir)

	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	root := NewRoot(strings.NewReader(""), out, io.Discard)
	root.SetArgs([]string{"server", "--data-dir", filepath.Join(dir, "d"), "--listen-client", addr, "--listen-peer", freeAddr(t),
		"--tls-cert", certFile, "--tls-key", keyFile, "--log-level", "error"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "cluster status") }, 20*time.Second, 20*time.Millisecond, "no banner")
	banner := out.String()
	require.Contains(t, banner, "--endpoints https://"+addr+"\n", banner)
	require.NotContains(t, banner, "--endpoints "+addr, banner)
}

// --max-concurrent-streams reaches the config, and a value outside 1 to
// 1,000,000 stops `concord server` before it writes its data dir.
func TestServerRefusesMaxConcurrentStreamsOutOfRange(t *testing.T) {
	for _, v := range []string{"-1", "1000001"} {
		dir := filepath.Join(t.TempDir(), "d")
		out, err := runCLI(t, "server", "--data-dir", dir, "--listen-client", freeAddr(t), "--listen-peer", freeAddr(t),
			"--max-concurrent-streams", v, "--log-format", "text")
		require.ErrorContains(t, err, "--max-concurrent-streams "+v, "%s", out)
		require.NoDirExists(t, dir)
	}
}

// --http2-ping-interval and --http2-ping-timeout reach the config: a
// negative value, or one below a second, stops `concord server` before it
// writes its data dir.
func TestServerRefusesNonsenseHTTP2Pings(t *testing.T) {
	for flag, v := range map[string]string{
		"--http2-ping-interval": "-1s", "--http2-ping-timeout": "-5s",
	} {
		for _, v := range []string{v, "500ms"} {
			dir := filepath.Join(t.TempDir(), "d")
			out, err := runCLI(t, "server", "--data-dir", dir, "--listen-client", freeAddr(t), "--listen-peer", freeAddr(t),
				flag, v, "--log-format", "text")
			require.ErrorContains(t, err, flag+" "+v, "%s", out)
			require.NoDirExists(t, dir)
		}
	}
}
