package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/daemon"
)

func client4(t *testing.T, d *daemon.Daemon) *client.Client {
	cl, err := client.New(context.Background(), client.Config{Endpoints: []string{d.ClientAddr()}, DialTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}
