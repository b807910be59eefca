package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/testcluster"
)

// `cluster transfer-leader --json` ignored --json and printed "leader is
// now ...". It now prints {"leader": ...}.
func TestClusterTransferLeaderHonoursJSON(t *testing.T) {
	addr := startMember(t, "--name", "n1")
	out, _, err := run(t, "cluster", "transfer-leader", "n1", "--json", "--endpoints", addr) // already the leader
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &m), "cluster transfer-leader --json printed:\n%s", out)
	require.NotEmpty(t, m["leader"], out)
}

// The command `cluster add` printed to start the new member gave --name,
// --listen-peer and --join but neither --data-dir nor --listen-client:
// copied as it was, it started the member on the defaults, which on the
// same host are another member's. It now has placeholders for both.
func TestClusterAddHintHasDataDirAndClientAddress(t *testing.T) {
	addr := startMember(t, "--name", "n1")
	peer := freeAddr(t)
	out, _, err := run(t, "cluster", "add", "n2", peer, "--endpoints", addr)
	require.NoError(t, err)
	require.Contains(t, out, "concord server --name n2 --data-dir DATA_DIR --listen-peer "+peer+" --listen-client CLIENT_ADDR --join "+addr, out)
}

// `cluster status`, the command to run when a cluster has lost its quorum,
// and stale reads, which any member serves from its own state, both failed
// there after 5 s with "found no leader": the SDK's New required a leader.
// After that wait they now answer from the members that do answer:
// "leader: (none)".
func TestClusterStatusAndStaleReadsWorkWithoutALeader(t *testing.T) {
	addr, peer := freeAddr(t), freeAddr(t)
	// b never starts: a alone is no quorum of {a, b}.
	ctx, cancel := context.WithCancel(context.Background())
	root := NewRoot(strings.NewReader(""), io.Discard, io.Discard)
	root.SetArgs([]string{"server", "--name", "a", "--data-dir", filepath.Join(t.TempDir(), "d"), "--listen-client", addr,
		"--listen-peer", peer, "--initial-cluster", "a=" + peer + ",b=" + freeAddr(t), "--log-level", "error"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)

	out, errOut, err := run(t, "cluster", "status", "--endpoints", addr, "--timeout", "1s")
	require.NoError(t, err, "%s%s", out, errOut)
	require.Contains(t, out, "leader: (none)")
	out, errOut, err = run(t, "cluster", "members", "--endpoints", addr, "--timeout", "1s")
	require.NoError(t, err, "%s%s", out, errOut)
	require.Contains(t, out, "follower")
	_, _, err = run(t, "kv", "get", "k", "--consistency", "stale", "--endpoints", addr, "--timeout", "1s")
	require.ErrorIs(t, err, client.ErrNotFound, "a stale read of a key the member does not hold")
	_, _, err = run(t, "kv", "ls", "--consistency", "stale", "--endpoints", addr, "--timeout", "1s")
	require.NoError(t, err)
	// What needs the leader still says there is none.
	_, _, err = run(t, "kv", "get", "k", "--endpoints", addr, "--timeout", "2s")
	require.ErrorIs(t, err, client.ErrUnavailable)
}

// On a TLS cluster the command `cluster add` printed to start the new
// member joined through the bare host:port of --endpoints, which the
// joining member dials in plain HTTP. It now keeps the https:// of the
// endpoint it was given.
func TestClusterAddHintKeepsTheHTTPSEndpoint(t *testing.T) {
	certFile, keyFile, _ := testcluster.SelfSigned(t, t.TempDir())
	addr := startMember(t, "--name", "n1", "--tls-cert", certFile, "--tls-key", keyFile)
	out, errOut, err := run(t, "cluster", "add", "n2", freeAddr(t), "--endpoints", "https://"+addr, "--cacert", certFile)
	require.NoError(t, err, errOut)
	require.Contains(t, out, "--join https://"+addr+" ", out)
}

// With a private CA (--cacert) the start hint of `cluster add` joined
// without --join-cacert: the new member verified the cluster's certificate
// against the system's roots and, given a host:port endpoint, did not even
// ask over TLS. It waited five minutes and gave up. The hint now passes the
// CA on.
func TestClusterAddHintPassesThePrivateCA(t *testing.T) {
	certFile, keyFile, _ := testcluster.SelfSigned(t, t.TempDir())
	addr := startMember(t, "--name", "n1", "--tls-cert", certFile, "--tls-key", keyFile)
	for _, ep := range []string{addr, "https://" + addr} {
		out, errOut, err := run(t, "cluster", "add", "n2", freeAddr(t), "--endpoints", ep, "--cacert", certFile)
		require.NoError(t, err, errOut)
		require.Contains(t, out, "--join "+ep+" --join-cacert "+certFile+"\n", out)
		_, _, err = run(t, "cluster", "remove", "n2", "--endpoints", ep, "--cacert", certFile)
		require.NoError(t, err)
	}
}
