package peer

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/gen/internalv1/internalv1connect"
)

// Clients keeps one internal RPC client per peer address, over HTTP/2
// without TLS on mux connections.
type Clients struct {
	httpc *http.Client
	mu    sync.Mutex
	byURL map[string]internalv1connect.PeerClient
}

// NewClients returns a client pool that dials through m.
func NewClients(m *Mux) *Clients {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.DialRPC(ctx, addr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Clients{httpc: &http.Client{Transport: tr}, byURL: map[string]internalv1connect.PeerClient{}}
}

// For returns the client of the peer at addr.
func (c *Clients) For(addr string) internalv1connect.PeerClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.byURL[addr]
	if !ok {
		cl = internalv1connect.NewPeerClient(c.httpc, "http://"+addr, connect.WithGRPC(), connect.WithAcceptCompression("gzip", nil, nil), vtcodec.Option())
		c.byURL[addr] = cl
	}
	return cl
}

// Close drops idle connections.
func (c *Clients) Close() { c.httpc.CloseIdleConnections() }

// NewServer returns an HTTP/2 (cleartext) server for the internal RPC
// handler.
func NewServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
}
