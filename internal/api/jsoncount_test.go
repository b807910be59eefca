package api

import (
	"strings"
	"testing"
)

func TestCountJSON(t *testing.T) {
	for _, tc := range []struct {
		in            string
		values, calls int
	}{
		{`{}`, 0, 0},
		{`{"calls":[{},{"txn":{"compare":[{},{}]}}]}`, 5, 2},
		{`{"calls":[{"put":{"key":"e30=","value":"{{{[[["}}]}`, 2, 1},
		{`{"a":"\"{","calls":[{}]}`, 1, 1},
		{`{"calls":[[{}]]}`, 2, 0},
		{`[{},{}]`, 2, 0},
		{`}}}{`, 0, 0},
		{`{"names":["a", "b" ,"c"],"held":[ ],"x":{"y":{}}}`, 5, 0},
		{`{"names":[ "a,b" ]}`, 1, 0},
		{strings.Repeat("[", 20000) + "1" + strings.Repeat("]", 20000), 10000, 0},
	} {
		values, calls := countJSON([]byte(tc.in))
		if values != tc.values || calls != tc.calls {
			t.Errorf("%.60s: %d values and %d calls, want %d and %d", tc.in, values, calls, tc.values, tc.calls)
		}
	}
}
