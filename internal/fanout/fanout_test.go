package fanout

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Each calls fn once per item, never more than n at once, and returns
// when all calls have.
func TestEachCallsEveryItemWithAtMostNInFlight(t *testing.T) {
	for _, n := range []int{0, 1, 3, 50} {
		items := make([]int, 20)
		for i := range items {
			items[i] = i
		}
		var inFlight, most atomic.Int64
		var mu sync.Mutex
		seen := map[int]int{}
		asked := Each(context.Background(), items, n, func(i int) {
			now := inFlight.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			time.Sleep(time.Millisecond) // calls overlap when they may
			mu.Lock()
			seen[i]++
			mu.Unlock()
			inFlight.Add(-1)
		})
		limit := int64(max(n, 1))
		if asked != len(items) || len(seen) != len(items) || most.Load() > limit || inFlight.Load() != 0 {
			t.Errorf("n=%d: asked %d, %d items seen, %d at most in flight, %d still in flight; want %d, %d, at most %d, 0",
				n, asked, len(seen), most.Load(), inFlight.Load(), len(items), len(items), limit)
		}
		for i, c := range seen {
			if c != 1 {
				t.Errorf("n=%d: item %d called %d times", n, i, c)
			}
		}
	}
}

// Once ctx ends, Each hands out no more items, and says how many it did.
func TestEachStopsAskingWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	items := make([]int, 100)
	var calls atomic.Int64
	asked := Each(ctx, items, 4, func(int) {
		// The calls after the 10th wait for its cancel: a worker
		// descheduled between its count and its cancel (the race
		// detector's scheduling does that) let the others run the whole
		// list before the cancel came.
		switch n := calls.Add(1); {
		case n == 10:
			cancel()
		case n > 10:
			<-ctx.Done()
		}
	})
	if got := calls.Load(); int64(asked) != got || asked < 10 || asked > 10+4 {
		t.Errorf("asked %d, %d calls: want the calls handed out, 10 up to 10 plus the 4 in flight", asked, got)
	}
}
