// Package fanout runs one call per item of a list with a bounded number in
// flight, for the bulk operations of clients (cancelling or replaying
// thousands of tasks), whose cost is round trips to the server that calls
// in flight together hide.
package fanout

import (
	"context"
	"sync"
)

// Each calls fn for items, in their order, with at most n calls in flight,
// and returns how many items it handed to fn once every such call has
// returned. When ctx ends it hands out no more: the rest would each fail
// at once, as that many failures, where the caller wants to say how far it
// got. fn is called from several goroutines at once.
func Each[T any](ctx context.Context, items []T, n int, fn func(T)) (asked int) {
	jobs := make(chan T)
	var wg sync.WaitGroup
	for range min(max(n, 1), len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range jobs {
				fn(it)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	for _, it := range items {
		// Checked first: with a worker free as well, select would pick
		// between the two at random and hand out more after the end.
		if ctx.Err() != nil {
			return asked
		}
		select {
		case jobs <- it:
			asked++
		case <-ctx.Done():
			return asked
		}
	}
	return asked
}
