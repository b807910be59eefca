package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A member joining a cluster that serves its client API over TLS, through a
// follower's https:// address: the follower points at the leader's client
// address, which members advertise as host:port, and the joiner asked it
// over plain HTTP, which a TLS listener never answers, so it waited for
// five minutes and failed. It now asks the leader with the scheme of the
// member that answered, and verifies certificates with --join-cacert.
func TestJoinThroughAFollowerOfATLSCluster(t *testing.T) {
	certFile, keyFile, pool := testcluster.SelfSigned(t, t.TempDir())
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	}})
	ctx := ctxT(t, 60*time.Second)
	leader := c.WaitLeader(10 * time.Second)
	follower := (leader + 1) % len(c.Members)
	var eps []string
	for _, ep := range c.Endpoints() {
		eps = append(eps, "https://"+ep)
	}
	cl, err := client.New(ctx, client.Config{Endpoints: eps, TLS: &tls.Config{RootCAs: pool}})
	require.NoError(t, err)
	defer cl.Close()

	ip := "127.0.0.4"
	peer := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	added, err := cl.AddMember(ctx, "n4", peer)
	require.NoError(t, err)

	cfg := config.Server{
		Name: "n4", DataDir: filepath.Join(t.TempDir(), "n4"),
		ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), ListenPeer: peer,
		TLSCertFile: certFile, TLSKeyFile: keyFile,
		Join:           []string{"https://" + c.Members[follower].Cfg.ListenClient},
		JoinCACertFile: certFile,
		Raft:           c.Members[0].Cfg.Raft, ShutdownTimeout: 5 * time.Second,
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	d, err := daemon.Start(sctx, cfg, daemon.Options{})
	require.NoError(t, err, "the member did not find the leader through a follower of a TLS cluster")
	t.Cleanup(d.Kill)
	require.Equal(t, added.GetId(), d.Server().ID())
	require.Eventually(t, func() bool {
		st, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetName() == "n4" {
				return m.GetRole() == "follower"
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond, "n4 was not promoted")
}

// --join-cacert that holds no certificate fails the start at once, with the
// flag's name, instead of trusting nothing and waiting for five minutes.
func TestJoinCACertWithoutACertificateFailsTheStart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	_, keyFile, _ := testcluster.SelfSigned(t, t.TempDir())
	ip := "127.0.0.4"
	cfg := config.Server{
		Name: "n4", DataDir: filepath.Join(t.TempDir(), "n4"),
		ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), ListenPeer: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		Join:           c.Endpoints(),
		JoinCACertFile: keyFile, // a key, not a certificate
		Raft:           c.Members[0].Cfg.Raft, ShutdownTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.ErrorContains(t, err, "--join-cacert")
	require.ErrorContains(t, err, "holds no PEM certificate")
}
