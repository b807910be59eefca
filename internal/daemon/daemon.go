// Package daemon runs a concord member as a process: it starts the server,
// serves the client API (gRPC, gRPC-Web and HTTP/JSON on one port, cleartext
// HTTP/2 or TLS), and shuts down gracefully, handing leadership over first.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/concord-dev/concord/internal/api"
	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/server"
)

// idleTimeout closes a client connection without a call in progress: an
// HTTP/1.1 connection between requests, an HTTP/2 connection without open
// streams. Streams (watches, lock waits, keep-alives) keep theirs open
// however long they last, and a connection switched to the framed batch
// protocol is no longer the http.Server's.
var idleTimeout = 2 * time.Minute

// Options are a daemon's dependencies.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Banner, if set, receives a short human description of where the
	// member listens.
	Banner io.Writer
	// Clock overrides the lease clock (tests).
	Clock clock.Clock
}

// Daemon is a running member with its client API.
type Daemon struct {
	cfg     config.Server
	srv     *server.Server
	http    *http.Server
	api     *api.Handler
	conns   *connTracker
	ln      net.Listener
	log     *slog.Logger
	cancel  context.CancelFunc
	stopped chan struct{}
	served  chan error
	failed  chan error
}

// Start starts a member and serves its client API.
func Start(ctx context.Context, cfg config.Server, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg.SetDefaults()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	failed := make(chan error, 1)
	srv, err := server.New(cfg, server.Options{Logger: opts.Logger, Registerer: reg, Clock: opts.Clock, Version: opts.Version,
		OnFatal: func(err error) {
			select {
			case failed <- err:
			default:
			}
		}})
	if err != nil {
		return nil, err
	}
	cfg = srv.Config()
	// Load the certificate before anything starts: loaded by ServeTLS, a
	// missing or bad file failed only once Raft ran, and the member went
	// on without its client API.
	var tlsConfig *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", cfg.ListenClient)
	if err != nil {
		return nil, fmt.Errorf("client listen %s: %w", cfg.ListenClient, err)
	}
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		return nil, err
	}
	baseCtx, cancel := context.WithCancel(context.Background())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	conns := newConnTracker()
	ln = conns.listener(ln)
	d := &Daemon{
		cfg: cfg, srv: srv, ln: ln, conns: conns, log: opts.Logger, cancel: cancel,
		stopped: make(chan struct{}), served: make(chan error, 1), failed: failed,
	}
	d.api = api.New(srv, api.Options{
		Gatherer: reg, Registerer: reg, AuthToken: cfg.AuthToken, MaxRequestBytes: cfg.Limits.MaxRequestBytes,
		DisableFramedBatch: cfg.DisableFramedBatch,
	})
	// The server's HTTP/2 pings (--http2-ping-interval, 30 s, and
	// --http2-ping-timeout, 15 s): a connection on which no frame arrived
	// for the interval gets a PING, and is closed if the client does not
	// answer it within the timeout. A stream can be quiet for long (a
	// Lock.Acquire wait, a watch of a key nobody writes), and a NAT or load
	// balancer between client and member drops a connection idle for a
	// few minutes without telling either end: the pings keep it open, and
	// a member whose client is gone for good frees the connection's
	// streams within interval+timeout rather than never. A zero
	// SendPingTimeout sends none (--disable-http2-pings).
	sendPingTimeout := cfg.HTTP2PingInterval
	if cfg.DisableHTTP2Pings {
		sendPingTimeout = 0
	}
	d.http = &http.Server{
		Handler:   conns.handler(d.api),
		Protocols: &protocols,
		HTTP2: &http.HTTP2Config{
			// The streams one client connection may have open at once
			// (SETTINGS_MAX_CONCURRENT_STREAMS), 10,000 by default.
			// Streams of concord last (watches, waiting and held
			// Lock.Acquire calls, keep-alives), and gRPC clients
			// (grpc-go, gRPC C-core, grpc-java) keep one connection to a
			// member and hold back the streams past the limit rather than
			// dial another: with Go's default of 250, a client watching
			// 250 prefixes could not acquire a lock, its call never sent.
			MaxConcurrentStreams: cfg.MaxConcurrentStreams,
			SendPingTimeout:      sendPingTimeout,
			PingTimeout:          cfg.HTTP2PingTimeout,
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ConnContext:       conns.connContext,
		ConnState:         conns.connState,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	go func() {
		var err error
		if tlsConfig != nil {
			err = d.http.ServeTLS(ln, "", "")
		} else {
			err = d.http.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		d.served <- err
	}()
	if opts.Banner != nil {
		d.printBanner(opts.Banner)
	}
	opts.Logger.Info("member started", "name", cfg.Name, "id", srv.ID(), "client", ln.Addr().String(),
		"peer", cfg.ListenPeer, "data_dir", cfg.DataDir)
	return d, nil
}

func (d *Daemon) printBanner(w io.Writer) {
	scheme := "http"
	if d.cfg.TLSCertFile != "" {
		scheme = "https"
	}
	addr := d.ln.Addr().String()
	fmt.Fprintf(w, "concord member %q is up\n", d.cfg.Name)
	fmt.Fprintf(w, "  client API  %s://%s  (gRPC, gRPC-Web and HTTP/JSON)\n", scheme, addr)
	fmt.Fprintf(w, "  health      %s://%s/healthz  %s://%s/readyz  (gRPC: grpc.health.v1.Health)\n", scheme, addr, scheme, addr)
	fmt.Fprintf(w, "  metrics     %s://%s/metrics\n", scheme, addr)
	fmt.Fprintf(w, "  peer/Raft   %s\n", d.cfg.ListenPeer)
	fmt.Fprintf(w, "  data        %s\n", d.cfg.DataDir)
	// The CLI dials a bare host:port in plain HTTP: over TLS it needs the
	// scheme.
	ep := addr
	if scheme == "https" {
		ep = "https://" + addr
	}
	fmt.Fprintf(w, "try:\n  concord kv put greeting hello --endpoints %s\n  concord kv get greeting --endpoints %s\n  concord cluster status --endpoints %s\n", ep, ep, ep)
}

// ClientAddr returns the address the client API listens on.
func (d *Daemon) ClientAddr() string { return d.ln.Addr().String() }

// Server returns the member.
func (d *Daemon) Server() *server.Server { return d.srv }

// Stop shuts the member down gracefully: it stops taking requests, hands
// leadership over, ends streams, drains in-flight requests and stops Raft.
func (d *Daemon) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ShutdownTimeout)
	defer cancel()
	d.srv.BeginShutdown(ctx)
	d.cancel()
	// Shutdown waits for the HTTP/2 connections to end: closeIdle ends
	// those with nothing left to do rather than wait for their clients
	// (see connTracker).
	idle, stopIdle := context.WithCancel(ctx)
	go d.conns.closeIdle(idle)
	herr := d.http.Shutdown(ctx)
	stopIdle()
	if herr != nil {
		_ = d.http.Close()
	}
	// Framed batch connections were hijacked from the HTTP server; the
	// cancelled base context ends their input, and they close once their
	// calls are answered (WaitFramed closes those left at the deadline).
	herr = errors.Join(herr, d.api.WaitFramed(ctx))
	serr := d.srv.Stop(ctx)
	d.log.Info("member stopped", "name", d.cfg.Name, "idle_connections_closed", d.conns.closed.Load())
	return errors.Join(herr, serr)
}

// Kill stops the member without handing anything over, as a crash would
// (for in-process tests; the data dir stays as it is).
func (d *Daemon) Kill() {
	// First: a cancelled context makes the framed connections answer
	// their calls and say goodbye, as a graceful stop does; a crash
	// answers nothing.
	d.api.CloseFramed()
	d.cancel()
	_ = d.http.Close()
	_ = d.srv.Stop(context.Background())
}

// Served returns a channel that yields the client server's exit error.
func (d *Daemon) Served() <-chan error { return d.served }

// Failed returns a channel that yields an error when the member can no
// longer serve and must be restarted (its Raft log failed for good: see
// docs/operations.md, "Shutdown and crashes").
func (d *Daemon) Failed() <-chan error { return d.failed }
