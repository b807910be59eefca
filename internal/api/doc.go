// Package api serves concord's client API: the KV, Session and Cluster
// services over Connect (gRPC, gRPC-Web and HTTP/JSON on one port), plus
// /healthz, /readyz, /metrics and /debug endpoints. Handlers are thin: they
// call the server and turn its errors into wire errors through the one table
// in package errs.
package api
