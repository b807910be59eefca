package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
)

// `session ls` read every page of Session/List before printing a line:
// some 300 MB at a million sessions. It prints each page as it is read,
// the table under one header, --json one array written element by
// element; the output of more than one page is whole and in ID order.
func TestSessionLsPrintsPageByPage(t *testing.T) {
	addr := startMember(t)
	// No sessions: the header alone, an empty array.
	out, _, err := run(t, "session", "ls", "--endpoints", addr)
	require.NoError(t, err)
	require.Equal(t, []string{"ID", "NAME", "TTL", "REMAINING", "KEYS", "CREATED"}, strings.Fields(out))
	out, _, err = run(t, "session", "ls", "--json", "--endpoints", addr)
	require.NoError(t, err)
	require.JSONEq(t, "[]", out)

	sc := concordv1connect.NewSessionClient(http.DefaultClient, "http://"+addr)
	const n = 1_001 // the server's page is 1,000
	ids := make([]int64, 0, n)
	for i := range n {
		resp, err := sc.Create(context.Background(), connect.NewRequest(&concordv1.CreateSessionRequest{TtlMs: 600_000, Name: "s" + strconv.Itoa(i)}))
		require.NoError(t, err)
		ids = append(ids, resp.Msg.GetId())
	}
	for _, asJSON := range []bool{false, true} {
		args := []string{"session", "ls", "--endpoints", addr}
		if asJSON {
			args = append(args, "--json")
		}
		// Session/List calls answered when the first line was written.
		listed := func() float64 { return listCalls(t, addr) }
		before := listed()
		out := &firstWrite{at: func() float64 { return listed() - before }}
		root := NewRoot(strings.NewReader(""), out, io.Discard)
		root.SetArgs(args)
		require.NoError(t, root.Execute())
		require.Equal(t, float64(1), out.calls, "json %v: the first page is printed before the next is read", asJSON)
		if asJSON {
			var list []map[string]any
			require.NoError(t, json.Unmarshal(out.buf.Bytes(), &list), out.buf.String())
			require.Len(t, list, n)
			for i, s := range list {
				require.Equal(t, float64(ids[i]), s["id"])
				require.Equal(t, "s"+strconv.Itoa(i), s["name"])
			}
			continue
		}
		lines := strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n")
		require.Len(t, lines, n+1)
		require.True(t, strings.HasPrefix(lines[0], "ID "), lines[0])
		for i, l := range lines[1:] {
			f := strings.Fields(l)
			require.Equal(t, strconv.FormatInt(ids[i], 10), f[0], l)
			require.Equal(t, "s"+strconv.Itoa(i), f[1], l)
			// Fixed-width columns: every row starts its NAME where the
			// header does.
			require.Equal(t, strings.Index(lines[0], "NAME"), strings.Index(l, f[1]), l)
		}
	}
}

// firstWrite is a stdout that notes at() at its first write.
type firstWrite struct {
	buf   bytes.Buffer
	at    func() float64
	calls float64
}

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.buf.Len() == 0 && len(p) > 0 {
		w.calls = w.at()
	}
	return w.buf.Write(p)
}

// listCalls counts the Session/List calls a member answered.
func listCalls(t *testing.T, addr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, `concord_api_requests_total{code="ok",method="Session/List"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}
