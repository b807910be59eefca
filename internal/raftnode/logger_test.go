package raftnode

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

type named struct{ Hidden bool }

func (named) String() string { return "Node at 127.0.0.1:7080 [Follower]" }

// Raft logs values for hclog to format: hclog.Fmt("%+v", servers) and the
// *Raft itself, a fmt.Stringer. The adapter handed them to slog as they
// were, so a member's first lines read "servers":["%+v",[...]] and
// "follower":{"RestoreCommittedLogs":false}. They are now formatted as
// hclog formats them.
func TestHCLogAdapterFormatsValuesAsHCLogDoes(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewJSONHandler(&buf, nil)), "raft")
	l.With("node", named{}).Info("initial configuration",
		"servers", hclog.Fmt("%d servers: %s", 3, "n1 n2 n3"),
		"follower", named{},
		"id", hclog.Hex(255),
		"err", errors.New("boom"),
		"n", 7)
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got), buf.String())
	require.Equal(t, "3 servers: n1 n2 n3", got["servers"])
	require.Equal(t, "Node at 127.0.0.1:7080 [Follower]", got["follower"])
	require.Equal(t, "Node at 127.0.0.1:7080 [Follower]", got["node"])
	require.Equal(t, "0xff", got["id"])
	require.Equal(t, "boom", got["err"])
	require.Equal(t, 7.0, got["n"])
}

type valueStringer struct{ name string }

func (v valueStringer) String() string { return v.name }

// A typed nil pointer to a type whose String has a value receiver panics
// when String is called on it; the adapter called it directly, so such a
// log value would have crashed the member. fmt recovers and prints it.
func TestHCLogAdapterSurvivesANilStringer(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewJSONHandler(&buf, nil)), "raft")
	var nilPtr *valueStringer
	require.NotPanics(t, func() { l.Info("x", "peer", nilPtr) })
	require.Contains(t, buf.String(), `"peer":"<nil>"`)
}
