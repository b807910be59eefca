package api

import "testing"

func TestCountJSON(t *testing.T) {
	for _, tc := range []struct {
		in             string
		objects, calls int
	}{
		{`{}`, 0, 0},
		{`{"calls":[{},{"txn":{"compare":[{},{}]}}]}`, 5, 2},
		{`{"calls":[{"put":{"key":"e30=","value":"{{{[[["}}]}`, 2, 1},
		{`{"a":"\"{","calls":[{}]}`, 1, 1},
		{`{"calls":[[{}]]}`, 1, 0},
		{`[{},{}]`, 2, 0},
		{`}}}{`, 0, 0},
	} {
		objects, calls := countJSON([]byte(tc.in))
		if objects != tc.objects || calls != tc.calls {
			t.Errorf("%s: %d objects and %d calls, want %d and %d", tc.in, objects, calls, tc.objects, tc.calls)
		}
	}
}
