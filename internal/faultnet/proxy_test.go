package faultnet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, conn net.Conn, msg string, wait time.Duration) (string, error) {
	t.Helper()
	_, err := conn.Write([]byte(msg + "\n"))
	require.NoError(t, err)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	return bufio.NewReader(conn).ReadString('\n')
}

func TestProxyModes(t *testing.T) {
	p, err := Listen("127.0.0.1:0", echoServer(t))
	require.NoError(t, err)
	defer p.Close()

	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()
	got, err := roundTrip(t, conn, "hello", time.Second)
	require.NoError(t, err)
	require.Equal(t, "hello\n", got)

	p.Set("127.0.0.1", Link{Mode: Blackhole})
	_, err = roundTrip(t, conn, "lost", 200*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "a blackholed link is silent, not closed")

	p.Set("127.0.0.1", Link{Mode: Reset})
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, werr := conn.Write([]byte("x\n"))
	_, rerr := bufio.NewReader(conn).ReadString('\n')
	require.True(t, werr != nil || rerr != nil, "reset closes existing connections")
	if rerr != nil {
		require.False(t, errors.As(rerr, &ne) && ne.Timeout(), "reset must not look like a silent peer")
	}

	p.Heal()
	conn2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn2.Close()
	p.Set("127.0.0.1", Link{Delay: 150 * time.Millisecond})
	start := time.Now()
	got, err = roundTrip(t, conn2, "slow", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "slow\n", got)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
}

// TestProxyRetarget: connections accepted after Retarget go to the new
// target (a test member that moved to another port after its first one
// was taken).
func TestProxyRetarget(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	old := gone.Addr().String()
	gone.Close()
	p, err := Listen("127.0.0.1:0", old)
	require.NoError(t, err)
	defer p.Close()

	p.Retarget(echoServer(t))
	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()
	got, err := roundTrip(t, conn, "moved", time.Second)
	require.NoError(t, err)
	require.Equal(t, "moved\n", got)
}
