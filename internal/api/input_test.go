package api_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// reasonOf is the reason of an HTTP/JSON error answer.
func reasonOf(out map[string]any) string {
	details, _ := out["details"].([]any)
	if len(details) == 0 {
		return ""
	}
	debug, _ := details[0].(map[string]any)["debug"].(map[string]any)
	reason, _ := debug["reason"].(string)
	return reason
}

// ListWorkers holds a pool's name to the rules of every other call that
// names one (docs/ids.md): a careless client is told its name cannot exist
// rather than shown an empty pool.
func TestListWorkersRefusesAPoolNameNoPoolCanHave(t *testing.T) {
	c, _ := single(t, nil)
	url := "http://" + c.Endpoints()[0] + "/concord.v1.IDs/ListWorkers"
	for name, body := range map[string]string{
		"empty":    `{}`,
		"overlong": `{"pool":"` + strings.Repeat("p", 257) + `"}`,
		"NUL":      `{"pool":"a\u0000b"}`,
	} {
		t.Run(name, func(t *testing.T) {
			status, out := post(t, url, body)
			require.Equal(t, 400, status, "%v", out)
			require.Equal(t, "INVALID_ID_REQUEST", reasonOf(out), "%v", out)
		})
	}
	status, out := post(t, url, `{"pool":"unknown"}`)
	require.Equal(t, 200, status, "a pool that may exist is listed: %v", out)
}

// A consistency the API does not define is refused, as an unknown name of
// one is by the JSON decoder, rather than served as some other level.
func TestAnUnknownConsistencyIsRefused(t *testing.T) {
	c, _ := single(t, nil)
	base := "http://" + c.Endpoints()[0] + "/concord.v1."
	for method, body := range map[string]string{
		"KV/Range":     `{"key":"aw==","consistency":99}`,
		"Lock/Inspect": `{"name":"l","consistency":-1}`,
		"Lock/List":    `{"consistency":4}`,
	} {
		t.Run(method, func(t *testing.T) {
			status, out := post(t, base+method, body)
			require.Equal(t, 400, status, "%v", out)
			require.Equal(t, "INVALID_ARGUMENT", reasonOf(out), "%v", out)
		})
	}
	status, out := post(t, base+"KV/Range", `{"key":"aw==","consistency":"CONSISTENCY_STALE"}`)
	require.Equal(t, 200, status, "%v", out)
}
