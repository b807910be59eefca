package kv

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/fsm/record"
	"github.com/concord-dev/concord/internal/session"
)

type fakeSessions map[int64]bool

func (f fakeSessions) Exists(id int64) bool { return f[id] }

var lim = ReadLimits{MaxKeys: 100, MaxBytes: 1 << 20}

func put(t *testing.T, s *Store, rev uint64, k, v string) {
	t.Helper()
	_, _, err := s.Put(rev, &concordv1.PutRequest{Key: []byte(k), Value: []byte(v)})
	require.NoError(t, err)
}

func get(t *testing.T, s *Store, k string) *concordv1.KeyValue {
	t.Helper()
	resp, err := s.Range(&concordv1.RangeRequest{Key: []byte(k)}, lim)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func TestPutTracksRevisionsAndVersions(t *testing.T) {
	s := NewStore(fakeSessions{})
	put(t, s, 5, "a", "1")
	put(t, s, 9, "a", "2")
	got := get(t, s, "a")
	require.Equal(t, "2", string(got.Value))
	require.EqualValues(t, 5, got.CreateRevision)
	require.EqualValues(t, 9, got.ModRevision)
	require.EqualValues(t, 2, got.Version)
	require.EqualValues(t, 1, s.Len())
}

func TestPutBindsOnlyLiveSessions(t *testing.T) {
	s := NewStore(fakeSessions{7: true})
	_, _, err := s.Put(1, &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v"), Session: 8})
	require.ErrorIs(t, err, session.ErrNotFound)
	require.Nil(t, get(t, s, "k"))
	_, _, err = s.Put(2, &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v"), Session: 7})
	require.NoError(t, err)
	require.Equal(t, 1, s.SessionKeys(7))
	n, evs := s.DeleteSession(3, 7)
	require.EqualValues(t, 1, n)
	require.Len(t, evs, 1)
	require.Equal(t, EventDelete, evs[0].Type)
	require.Nil(t, get(t, s, "k"))
	require.Zero(t, s.SessionKeys(7))
}

func TestRebindMovesKeyBetweenSessions(t *testing.T) {
	s := NewStore(fakeSessions{1: true, 2: true})
	_, _, err := s.Put(1, &concordv1.PutRequest{Key: []byte("k"), Session: 1})
	require.NoError(t, err)
	_, _, err = s.Put(2, &concordv1.PutRequest{Key: []byte("k"), Session: 2})
	require.NoError(t, err)
	require.Zero(t, s.SessionKeys(1))
	require.Equal(t, 1, s.SessionKeys(2))
	n, _ := s.DeleteSession(3, 1)
	require.Zero(t, n)
	require.NotNil(t, get(t, s, "k"))
}

func TestRangePrefixAndPaging(t *testing.T) {
	s := NewStore(fakeSessions{})
	for i := 0; i < 25; i++ {
		put(t, s, uint64(i+1), fmt.Sprintf("p/%02d", i), "v")
	}
	put(t, s, 100, "q", "v")
	put(t, s, 101, "p", "v")

	var keys []string
	start := []byte("p/")
	end := PrefixEnd([]byte("p/"))
	for {
		resp, err := s.Range(&concordv1.RangeRequest{Key: start, RangeEnd: end, Limit: 10}, lim)
		require.NoError(t, err)
		for _, kv := range resp.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if !resp.More {
			break
		}
		start = append(append([]byte{}, resp.Kvs[len(resp.Kvs)-1].Key...), 0)
	}
	require.Len(t, keys, 25)
	require.Equal(t, "p/00", keys[0])
	require.Equal(t, "p/24", keys[24])

	resp, err := s.Range(&concordv1.RangeRequest{Key: []byte("p/"), Prefix: true, CountOnly: true}, lim)
	require.NoError(t, err)
	require.EqualValues(t, 25, resp.Count)
	require.Empty(t, resp.Kvs)

	resp, err = s.Range(&concordv1.RangeRequest{Key: nil, Prefix: true, KeysOnly: true}, lim)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 27)
	require.Empty(t, resp.Kvs[0].Value)
}

func TestRangeByteLimitStillReturnsOneKey(t *testing.T) {
	s := NewStore(fakeSessions{})
	put(t, s, 1, "a", string(make([]byte, 100)))
	put(t, s, 2, "b", string(make([]byte, 100)))
	resp, err := s.Range(&concordv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}, ReadLimits{MaxKeys: 10, MaxBytes: 10})
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.True(t, resp.More)
}

func TestSpanErrors(t *testing.T) {
	_, err := SpanOf(nil, nil, false)
	require.ErrorIs(t, err, ErrEmptyKey)
	_, err = SpanOf([]byte("b"), []byte("a"), false)
	require.ErrorIs(t, err, ErrInvalidRange)
	_, err = SpanOf([]byte("a"), []byte("b"), true)
	require.ErrorIs(t, err, ErrInvalidRange)
	require.Nil(t, PrefixEnd([]byte{0xff, 0xff}))
	require.Equal(t, []byte("b"), PrefixEnd([]byte("a\xff")))
}

func TestDeleteRange(t *testing.T) {
	s := NewStore(fakeSessions{})
	put(t, s, 1, "a", "1")
	put(t, s, 2, "b", "22")
	put(t, s, 3, "c", "333")
	resp, evs, err := s.DeleteRange(4, &concordv1.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true})
	require.NoError(t, err)
	require.EqualValues(t, 2, resp.Deleted)
	require.Len(t, resp.PrevKvs, 2)
	require.Len(t, evs, 2)
	require.Equal(t, 1, s.Len())
	require.Equal(t, (&Item{Key: []byte("c"), Value: []byte("333")}).Size(), s.Bytes())
}

func ptr(v int64) *int64 { return &v }

func TestAddBounds(t *testing.T) {
	s := NewStore(fakeSessions{})
	resp, _, err := s.Add(1, &concordv1.AddRequest{Key: []byte("stock"), Delta: 10})
	require.NoError(t, err)
	require.EqualValues(t, 10, resp.Value)

	tests := []struct {
		name    string
		delta   int64
		min     *int64
		max     *int64
		wantErr error
		want    int64
	}{
		{name: "within", delta: -3, min: ptr(0), want: 7},
		{name: "below min", delta: -8, min: ptr(0), wantErr: ErrOutOfRange},
		{name: "exact min", delta: -7, min: ptr(0), want: 0},
		{name: "above max", delta: 5, max: ptr(4), wantErr: ErrOutOfRange},
		{name: "back up", delta: 4, max: ptr(4), want: 4},
		{name: "overflow", delta: 1<<63 - 1, wantErr: ErrOutOfRange},
	}
	rev := uint64(2)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := get(t, s, "stock")
			resp, _, err := s.Add(rev, &concordv1.AddRequest{Key: []byte("stock"), Delta: tc.delta, Min: tc.min, Max: tc.max})
			rev++
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.True(t, proto.Equal(before, get(t, s, "stock")), "failed add changed the key")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, resp.Value)
			require.Equal(t, fmt.Sprint(tc.want), string(get(t, s, "stock").Value))
		})
	}

	put(t, s, 50, "text", "abc")
	_, _, err = s.Add(51, &concordv1.AddRequest{Key: []byte("text"), Delta: 1})
	require.ErrorIs(t, err, ErrNotCounter)
}

func cmpOp(key string, target concordv1.Compare_Target, result concordv1.Compare_Result, n int64, v string) *concordv1.Compare {
	return &concordv1.Compare{Key: []byte(key), Target: target, Result: result, Number: n, Value: []byte(v)}
}

func putOp(k, v string) *concordv1.RequestOp {
	return &concordv1.RequestOp{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: []byte(k), Value: []byte(v)}}}
}

func TestTxnCompares(t *testing.T) {
	s := NewStore(fakeSessions{})
	put(t, s, 3, "k", "v1")
	tests := []struct {
		name string
		c    *concordv1.Compare
		want bool
	}{
		{"value equal", cmpOp("k", concordv1.Compare_TARGET_VALUE, concordv1.Compare_RESULT_EQUAL, 0, "v1"), true},
		{"value not equal", cmpOp("k", concordv1.Compare_TARGET_VALUE, concordv1.Compare_RESULT_NOT_EQUAL, 0, "v1"), false},
		{"value greater", cmpOp("k", concordv1.Compare_TARGET_VALUE, concordv1.Compare_RESULT_GREATER, 0, "v0"), true},
		{"value of missing never matches", cmpOp("nope", concordv1.Compare_TARGET_VALUE, concordv1.Compare_RESULT_NOT_EQUAL, 0, "x"), false},
		{"absent", cmpOp("nope", concordv1.Compare_TARGET_CREATE_REVISION, concordv1.Compare_RESULT_EQUAL, 0, ""), true},
		{"present is not absent", cmpOp("k", concordv1.Compare_TARGET_CREATE_REVISION, concordv1.Compare_RESULT_EQUAL, 0, ""), false},
		{"mod revision", cmpOp("k", concordv1.Compare_TARGET_MOD_REVISION, concordv1.Compare_RESULT_EQUAL, 3, ""), true},
		{"version less", cmpOp("k", concordv1.Compare_TARGET_VERSION, concordv1.Compare_RESULT_LESS, 2, ""), true},
	}
	rev := uint64(10)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, err := s.Txn(rev, &concordv1.TxnRequest{Compare: []*concordv1.Compare{tc.c}}, lim)
			rev++
			require.NoError(t, err)
			require.Equal(t, tc.want, resp.Succeeded)
		})
	}
	_, _, err := s.Txn(rev, &concordv1.TxnRequest{Compare: []*concordv1.Compare{{Key: []byte("k")}}}, lim)
	require.ErrorIs(t, err, ErrInvalidCompare)
	_, _, err = s.Txn(rev, &concordv1.TxnRequest{Compare: []*concordv1.Compare{cmpOp("k", concordv1.Compare_TARGET_LOCK_TOKEN, concordv1.Compare_RESULT_EQUAL, 1, "")}}, lim)
	require.ErrorIs(t, err, ErrLockUnsupported)
}

func TestTxnIsAtomic(t *testing.T) {
	s := NewStore(fakeSessions{})
	put(t, s, 1, "stock", "1")
	bytesBefore := s.Bytes()
	req := &concordv1.TxnRequest{Success: []*concordv1.RequestOp{
		putOp("order/1", "placed"),
		{Request: &concordv1.RequestOp_Add{Add: &concordv1.AddRequest{Key: []byte("stock"), Delta: -2, Min: ptr(0)}}},
	}}
	_, evs, err := s.Txn(2, req, lim)
	require.ErrorIs(t, err, ErrOutOfRange)
	require.Empty(t, evs)
	require.Nil(t, get(t, s, "order/1"), "the put before the failing add must not survive")
	require.Equal(t, "1", string(get(t, s, "stock").Value))
	require.Equal(t, bytesBefore, s.Bytes())

	req.Success[1].GetAdd().Delta = -1
	resp, evs, err := s.Txn(3, req, lim)
	require.NoError(t, err)
	require.True(t, resp.Succeeded)
	require.Len(t, evs, 2)
	require.EqualValues(t, 0, resp.Responses[1].GetAdd().Value)
	require.Equal(t, "placed", string(get(t, s, "order/1").Value))
}

func TestTxnLaterOpsSeeEarlierOnes(t *testing.T) {
	s := NewStore(fakeSessions{})
	req := &concordv1.TxnRequest{Success: []*concordv1.RequestOp{
		putOp("a", "1"),
		{Request: &concordv1.RequestOp_Range{Range: &concordv1.RangeRequest{Key: []byte("a")}}},
	}}
	resp, _, err := s.Txn(7, req, lim)
	require.NoError(t, err)
	got := resp.Responses[1].GetRange().Kvs
	require.Len(t, got, 1)
	require.Equal(t, "1", string(got[0].Value))
}

func TestTxnEmptyOpRejected(t *testing.T) {
	s := NewStore(fakeSessions{})
	_, _, err := s.Txn(1, &concordv1.TxnRequest{Success: []*concordv1.RequestOp{{}}}, lim)
	require.ErrorIs(t, err, ErrEmptyOp)
}

// TestCloneIsolatesWrites checks that a lazy clone taken for a snapshot
// keeps the items as they were while the store goes on being written.
func TestCloneIsolatesWrites(t *testing.T) {
	s := NewStore(fakeSessions{})
	for i := range 500 {
		put(t, s, uint64(i+1), fmt.Sprintf("k%03d", i), "old")
	}
	n, write := s.Capture()
	for i := range 500 {
		put(t, s, uint64(1000+i), fmt.Sprintf("k%03d", i), "new")
	}
	_, _, err := s.DeleteRange(2000, &concordv1.DeleteRangeRequest{Key: []byte("k1"), Prefix: true})
	require.NoError(t, err)
	require.EqualValues(t, 500, n)
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	require.NoError(t, write(w))
	require.NoError(t, w.Flush())
	r := record.NewReader(&buf)
	for i := range 500 {
		var kv concordv1.KeyValue
		require.NoError(t, r.Read(&kv))
		require.Equal(t, fmt.Sprintf("k%03d", i), string(kv.GetKey()))
		require.Equal(t, "old", string(kv.GetValue()))
	}
	require.Equal(t, 400, s.Len())
	require.Equal(t, "new", string(get(t, s, "k250").GetValue()))
	require.EqualValues(t, 2, get(t, s, "k250").GetVersion())
}

// BenchmarkPutExisting measures a put over an existing key among 10,000,
// the state machine's share of the put benchmark.
func BenchmarkPutExisting(b *testing.B) {
	s := NewStore(fakeSessions{})
	keys := make([][]byte, 10_000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%08d", i))
		if _, _, err := s.Put(uint64(i+1), &concordv1.PutRequest{Key: keys[i], Value: make([]byte, 256)}); err != nil {
			b.Fatal(err)
		}
	}
	value := make([]byte, 256)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := keys[(i*7919)%len(keys)]
		if _, _, err := s.Put(uint64(20_000+i), &concordv1.PutRequest{Key: k, Value: value}); err != nil {
			b.Fatal(err)
		}
	}
}

// RangeResponse.count was documented as "the number of keys in the range"
// but was the page's size for a limited range. It is documented now as what
// it is: the keys returned, or with count_only the keys in the range.
func TestRangeCountIsThePageOrWithCountOnlyTheRange(t *testing.T) {
	s := NewStore(fakeSessions{})
	for i := range 25 {
		put(t, s, uint64(i+1), fmt.Sprintf("p/%02d", i), "v")
	}
	page, err := s.Range(&concordv1.RangeRequest{Key: []byte("p/"), Prefix: true, Limit: 10}, lim)
	require.NoError(t, err)
	require.Len(t, page.Kvs, 10)
	require.True(t, page.More)
	require.EqualValues(t, len(page.Kvs), page.Count)
	counted, err := s.Range(&concordv1.RangeRequest{Key: []byte("p/"), Prefix: true, Limit: 10, CountOnly: true}, lim)
	require.NoError(t, err)
	require.Empty(t, counted.Kvs)
	require.EqualValues(t, 25, counted.Count, "count_only counts the whole range, whatever the limit")
}
