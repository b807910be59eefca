package idgen

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// memSegments is an in-memory tag with an optional fetch delay.
type memSegments struct {
	next  atomic.Int64
	delay time.Duration
	calls atomic.Int64
}

func (m *memSegments) AllocSegment(_ context.Context, _ string, count int64) (int64, int64, error) {
	m.calls.Add(1)
	time.Sleep(m.delay)
	end := m.next.Add(count)
	return end - count, end, nil
}

func TestSegmentsBurstNeverFailsAndStaysUnique(t *testing.T) {
	src := &memSegments{delay: 2 * time.Millisecond}
	s := NewSegments(src, "orders", SegmentConfig{Step: 100, MinStep: 10})
	const goroutines, each = 1000, 50
	ids := make([][]int64, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := 0; j < each; j++ {
				v, err := s.Next(context.Background())
				if err != nil {
					t.Errorf("burst saw %v", err)
					return
				}
				if j > 0 && v <= ids[i][j-1] {
					t.Errorf("not increasing for one caller")
				}
				ids[i] = append(ids[i], v)
			}
		}()
	}
	close(start)
	wg.Wait()
	seen := map[int64]bool{}
	for _, list := range ids {
		for _, v := range list {
			require.False(t, seen[v], "duplicate %d", v)
			seen[v] = true
		}
	}
	st := s.Stats()
	require.EqualValues(t, goroutines*each, st.Issued)
	require.Positive(t, st.StepChanges, "a burst grows the step")
}

func TestSegmentsPrefetchKeepsCallsOffTheNetwork(t *testing.T) {
	src := &memSegments{delay: 20 * time.Millisecond}
	s := NewSegments(src, "t", SegmentConfig{Step: 1000, MinStep: 1000, MaxStep: 1000})
	ctx := context.Background()
	_, err := s.Next(ctx) // the first call fetches
	require.NoError(t, err)
	for seg := 1; seg <= 5; seg++ {
		// Use the segment past its prefetch point, let the prefetch land,
		// then cross the boundary: no call may wait for the network.
		for i := 0; i < 600; i++ {
			_, err := s.Next(ctx)
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool { return s.Stats().Fetches == int64(seg+1) }, 5*time.Second, time.Millisecond)
		for i := 0; i < 400; i++ {
			_, err := s.Next(ctx)
			require.NoError(t, err)
		}
	}
	require.EqualValues(t, 1, s.Stats().Waits, "only the very first call waited for a fetch")
	require.EqualValues(t, 6, src.calls.Load())
}

func TestUUIDv7(t *testing.T) {
	clk := newFakeClock(t0)
	g := newUUIDv7(clk)
	prev := g.New()
	require.Equal(t, byte(0x70), prev[6]&0xf0, "version 7")
	require.Equal(t, byte(0x80), prev[8]&0xc0, "RFC 9562 variant")
	require.Equal(t, t0.UnixMilli(), prev.Time().UnixMilli())
	for i := 0; i < 10000; i++ {
		if i == 5000 {
			clk.Advance(-time.Second)
		}
		u := g.New()
		require.Positive(t, compareUUID(u, prev), "UUIDs strictly increase, even across a rollback")
		prev = u
	}
	require.Len(t, prev.String(), 36)
}

func compareUUID(a, b UUID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] > b[i] {
				return 1
			}
			return -1
		}
	}
	return 0
}

type memSequence struct {
	mu    sync.Mutex
	cur   int64
	calls int
}

func (m *memSequence) NextSequence(_ context.Context, _ string, n int64) (int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	time.Sleep(time.Millisecond)
	first := m.cur + 1
	m.cur += n
	return first, m.cur, nil
}

func TestSequenceBatchesAndHasNoGaps(t *testing.T) {
	src := &memSequence{}
	s := NewSequence(src, "invoice", 0)
	const n = 500
	got := make([]int64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.Next(context.Background())
			require.NoError(t, err)
			got[i] = v
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, v := range got {
		seen[v] = true
	}
	for v := int64(1); v <= n; v++ {
		require.True(t, seen[v], "gap at %d", v)
	}
	require.Less(t, src.calls, n/5, "callers share requests")
}

// sizes records the count of every fetch.
type sizes struct {
	memSegments
	mu     sync.Mutex
	counts []int64
}

func (s *sizes) AllocSegment(ctx context.Context, tag string, count int64) (int64, int64, error) {
	s.mu.Lock()
	s.counts = append(s.counts, count)
	s.mu.Unlock()
	return s.memSegments.AllocSegment(ctx, tag, count)
}

// A buffer that meets a high rate grows by the factor its segments fell
// short of the target, at most 1024x per fetch, so it lasts within a few
// fetches; one that meets a trickle shrinks by half.
func TestSegmentStepFollowsTheRate(t *testing.T) {
	src := &sizes{}
	seg := NewSegments(src, "t", SegmentConfig{Step: 1000, Target: time.Hour})
	ctx := context.Background()
	for i := 0; i < 2_000_000; i++ {
		_, err := seg.Next(ctx)
		require.NoError(t, err)
	}
	src.mu.Lock()
	counts := append([]int64(nil), src.counts...)
	src.mu.Unlock()
	require.GreaterOrEqual(t, len(counts), 2)
	require.Equal(t, int64(1000), counts[0])
	require.Equal(t, int64(1000*1024), counts[1], "a segment that lasted far less than the target grows 1024x at most")
	require.LessOrEqual(t, len(counts), 4, "two million numbers at this rate take few fetches: %v", counts)

	slow := &sizes{}
	seg = NewSegments(slow, "t", SegmentConfig{Step: 1000, Target: time.Millisecond, Prefetch: 0.5})
	for i := 0; i < 3000; i++ {
		// Sleep more often than the smallest segment (MinStep, 100) is
		// used up, so that every segment, at every size the shrinking
		// reaches, lasts over twice the target.
		if i%50 == 0 {
			time.Sleep(3 * time.Millisecond)
		}
		_, err := seg.Next(ctx)
		require.NoError(t, err)
	}
	slow.mu.Lock()
	defer slow.mu.Unlock()
	require.Less(t, slow.counts[len(slow.counts)-1], int64(1000), "a trickle shrinks the step: %v", slow.counts)
}

// blockingSequence blocks its first call until released.
type blockingSequence struct {
	mu      sync.Mutex
	cur     int64
	calls   int
	release chan struct{}
	entered chan struct{}
}

func (b *blockingSequence) NextSequence(_ context.Context, _ string, n int64) (int64, int64, error) {
	b.mu.Lock()
	b.calls++
	first := b.calls == 1
	b.mu.Unlock()
	if first {
		close(b.entered)
		<-b.release
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.cur + 1
	b.cur += n
	return f, b.cur, nil
}

// TestSequenceCanceledWaiterLeavesNoGap: a caller whose ctx ended while it
// was still queued (its batch not yet sent) stayed in the queue, and the
// next batch counted a value for it that nobody received: a gap in a
// sequence documented gap-free. Such a caller now leaves the queue.
func TestSequenceCanceledWaiterLeavesNoGap(t *testing.T) {
	src := &blockingSequence{release: make(chan struct{}), entered: make(chan struct{})}
	s := NewSequence(src, "invoice", 0)
	got := make(chan int64, 2)
	go func() { v, _ := s.Next(context.Background()); got <- v }()
	<-src.entered // batch 1 (one caller) is in flight

	ctx, cancel := context.WithCancel(context.Background())
	canceled := make(chan error, 1)
	go func() { _, err := s.Next(ctx); canceled <- err }()
	queued := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiting) }
	require.Eventually(t, func() bool { return queued() == 1 }, time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-canceled, context.Canceled)

	go func() { v, _ := s.Next(context.Background()); got <- v }()
	require.Eventually(t, func() bool { return queued() >= 1 }, time.Second, time.Millisecond)
	close(src.release)
	a, b := <-got, <-got
	require.ElementsMatch(t, []int64{1, 2}, []int64{a, b}, "the values handed out are consecutive")
}
