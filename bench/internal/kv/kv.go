// Package kv puts one face on the clients of the systems under test: a Conn
// writes and reads single keys, linearizably, through one client object
// that knows every member.
package kv

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concord-dev/concord/client"
)

// Conn is one client object of a system under test. It is safe for
// concurrent use.
type Conn interface {
	// Put writes value at key.
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key linearizably.
	Get(ctx context.Context, key string) error
	// Close releases the client.
	Close() error
}

// DialFunc connects one Conn to the members at endpoints (host:port).
type DialFunc func(ctx context.Context, endpoints []string) (Conn, error)

// DialConcord connects a concord SDK client.
func DialConcord(ctx context.Context, endpoints []string) (Conn, error) {
	c, err := client.New(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		return nil, err
	}
	return concordConn{c}, nil
}

type concordConn struct{ c *client.Client }

func (c concordConn) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.c.Put(ctx, key, value)
	return err
}

// Get uses the SDK's default consistency, which is linearizable.
func (c concordConn) Get(ctx context.Context, key string) error {
	_, err := c.c.Get(ctx, key)
	return err
}

func (c concordConn) Close() error { return c.c.Close() }

// DialEtcd connects an etcd clientv3 client.
func DialEtcd(ctx context.Context, endpoints []string) (Conn, error) {
	urls := make([]string, len(endpoints))
	for i, ep := range endpoints {
		urls[i] = "http://" + ep
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	// Fail here, like client.New, if no member answers.
	if _, err := c.Get(ctx, "kvbench/dial"); err != nil {
		c.Close()
		return nil, err
	}
	return etcdConn{c}, nil
}

type etcdConn struct{ c *clientv3.Client }

func (c etcdConn) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.c.Put(ctx, key, string(value))
	return err
}

// Get uses clientv3's default, a linearizable read. Like concord's Get, it
// fails on a missing key.
func (c etcdConn) Get(ctx context.Context, key string) error {
	resp, err := c.c.Get(ctx, key)
	if err == nil && len(resp.Kvs) == 0 {
		err = fmt.Errorf("etcd: key %q not found", key)
	}
	return err
}

func (c etcdConn) Close() error { return c.c.Close() }
