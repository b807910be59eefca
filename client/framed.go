package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/api/vtcodec"
)

// framedPingAfter is how long a framed batch connection may be silent
// before the SDK pings the member, and framedPingTimeout how long it then
// waits for any frame before it closes the connection: the HTTP/2 settings
// of the Connect transport (newHTTPClient). Variables for tests.
var (
	framedPingAfter   = 2 * time.Second
	framedPingTimeout = 2 * time.Second
)

const (
	// framedRetryAfter is how long the SDK uses an endpoint's Connect
	// stream after the member refused the framed protocol (an older
	// release) before it asks again.
	framedRetryAfter = 5 * time.Minute
	// maxFramedResponse bounds a response frame, as the Connect client
	// bounds a response message.
	maxFramedResponse = 64 << 20
)

// errFramedRefused is returned when a member answered the upgrade to the
// framed batch protocol with something else than the switch.
var errFramedRefused = errors.New("member does not speak the framed batch protocol")

// batchStream is a KV.Batch stream as the batcher sees it: the framed
// protocol's or Connect's.
type batchStream interface {
	Send(*concordv1.BatchRequest) error
	Receive() (*concordv1.BatchResponse, error)
	// CloseRequest ends the stream's requests, once its context is
	// cancelled.
	CloseRequest() error
}

// openBatch opens a KV.Batch stream to ep that lives until ctx ends: on the
// framed protocol unless it is off or the member refused it lately, else
// on Connect.
func (c *Client) openBatch(ctx context.Context, ep *endpoint) (batchStream, error) {
	if !c.cfg.DisableFramedBatch {
		if at := ep.framedRefused.Load(); at == 0 || time.Since(time.Unix(0, at)) > framedRetryAfter {
			s, err := c.dialFramed(ctx, ep)
			if err == nil {
				return s, nil
			}
			if !errors.Is(err, errFramedRefused) {
				return nil, err
			}
			ep.framedRefused.Store(time.Now().UnixNano())
			c.log.Info("using the Connect batch stream", "endpoint", ep.addr, "reason", err)
		}
	}
	return ep.kv.Batch(ctx), nil
}

// framedStream is a KV.Batch stream on a connection switched to the framed
// protocol (api/batchwire).
type framedStream struct {
	conn net.Conn
	r    *batchwire.Reader
	w    *batchwire.Writer
	// lastRecv is when the last frame arrived (UnixNano).
	lastRecv atomic.Int64
	// pingAfter and pingTimeout are framedPingAfter and framedPingTimeout.
	pingAfter, pingTimeout time.Duration
}

// dialFramed connects to ep and switches the connection to the framed
// protocol. The connection closes when ctx ends.
func (c *Client) dialFramed(ctx context.Context, ep *endpoint) (*framedStream, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nd := &net.Dialer{KeepAlive: 15 * time.Second}
	var conn net.Conn
	var err error
	if ep.tls {
		cfg := &tls.Config{}
		if c.cfg.TLS != nil {
			cfg = c.cfg.TLS.Clone()
		}
		// The Upgrade is HTTP/1.1's.
		cfg.NextProtos = []string{"http/1.1"}
		conn, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(dctx, "tcp", ep.addr)
	} else {
		conn, err = nd.DialContext(dctx, "tcp", ep.addr)
	}
	if err != nil {
		return nil, err
	}
	br, err := c.upgrade(dctx, conn, ep)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &framedStream{conn: conn, r: batchwire.NewReader(br, maxFramedResponse), w: batchwire.NewWriter(conn),
		pingAfter: framedPingAfter, pingTimeout: framedPingTimeout}
	s.lastRecv.Store(time.Now().UnixNano())
	context.AfterFunc(ctx, func() { conn.Close() })
	go s.watch(ctx)
	return s, nil
}

// upgrade asks the member to switch conn to the framed protocol.
func (c *Client) upgrade(ctx context.Context, conn net.Conn, ep *endpoint) (*bufio.Reader, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var req strings.Builder
	req.WriteString("GET " + concordv1connect.KVBatchProcedure + " HTTP/1.1\r\nHost: " + ep.addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + batchwire.Protocol + "\r\n")
	if c.cfg.Token != "" {
		req.WriteString("Authorization: Bearer " + c.cfg.Token + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), batchwire.Protocol) {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s answered the upgrade with %q", errFramedRefused, ep.addr, resp.Status)
	}
	if !stop() {
		// ctx ended as the answer came: the deadline may be in the past.
		return nil, fmt.Errorf("upgrade of %s: %w", ep.addr, context.Cause(ctx))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return br, nil
}

// watch pings a member it has not heard from for framedPingAfter and
// closes the connection when nothing arrives within framedPingTimeout
// more: a paused or cut-off member's calls then fail over.
func (s *framedStream) watch(ctx context.Context) {
	t := time.NewTicker(s.pingTimeout / 4)
	defer t.Stop()
	var pinged int64 // when the unanswered ping went out, 0 if none
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			last := s.lastRecv.Load()
			switch {
			case pinged != 0 && last >= pinged:
				pinged = 0
			case pinged != 0 && now.UnixNano()-pinged > int64(s.pingTimeout):
				s.conn.Close()
				return
			}
			if pinged == 0 && now.UnixNano()-last > int64(s.pingAfter) {
				pinged = now.UnixNano()
				if s.w.WritePing(batchwire.FramePing, [batchwire.PingSize]byte{}) != nil {
					s.conn.Close()
					return
				}
			}
		}
	}
}

// Send writes one message as one frame.
func (s *framedStream) Send(req *concordv1.BatchRequest) error { return s.w.WriteMessage(req) }

// CloseRequest does nothing: the connection closes when the stream's
// context ends (dialFramed).
func (s *framedStream) CloseRequest() error { return nil }

// Receive returns the next response, answering the member's pings.
func (s *framedStream) Receive() (*concordv1.BatchResponse, error) {
	for {
		typ, payload, err := s.r.Next()
		if err != nil {
			return nil, err
		}
		s.lastRecv.Store(time.Now().UnixNano())
		switch typ {
		case batchwire.FrameMessage:
			resp := &concordv1.BatchResponse{}
			if err := (vtcodec.Codec{}).Unmarshal(payload, resp); err != nil {
				return nil, err
			}
			return resp, nil
		case batchwire.FramePing:
			if err := s.w.WritePing(batchwire.FramePong, [batchwire.PingSize]byte(payload)); err != nil {
				return nil, err
			}
		}
	}
}
