package cli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The CLI had no way to trust a cluster's private CA: against a member
// serving TLS with a certificate the system's roots do not know, every
// verb failed. --cacert (or CONCORD_CACERT) trusts a PEM bundle, and with
// it host:port endpoints are dialed with TLS, as the SDK does.
func TestCLITrustsTheCAOfATLSCluster(t *testing.T) {
	certFile, keyFile, _ := testcluster.SelfSigned(t, t.TempDir())
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	}})
	addr := c.Endpoints()[0]

	out, err := runCLI(t, "--endpoints", addr, "--cacert", certFile, "kv", "put", "tls", "yes")
	require.NoError(t, err, out)
	out, err = runCLI(t, "--endpoints", "https://"+addr, "--cacert", certFile, "kv", "get", "tls")
	require.NoError(t, err, out)
	require.Contains(t, out, "yes")

	t.Setenv("CONCORD_CACERT", certFile)
	out, err = runCLI(t, "--endpoints", addr, "kv", "get", "tls")
	require.NoError(t, err, out)
	require.Contains(t, out, "yes")
	t.Setenv("CONCORD_CACERT", "")

	_, err = runCLI(t, "--endpoints", "https://"+addr, "--timeout", "2s", "kv", "get", "tls")
	require.Error(t, err, "a certificate no configured CA signed was trusted")

	_, err = runCLI(t, "--endpoints", addr, "--cacert", keyFile, "kv", "get", "tls")
	require.ErrorContains(t, err, "--cacert")
	require.ErrorContains(t, err, "holds no PEM certificate")
}
