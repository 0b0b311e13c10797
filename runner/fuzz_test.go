package runner

import (
	"math"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

// FuzzBackoff: for any base, cap and retry count the delay is within
// [0, min(cap, models.MaxRetryDelay)], never negative (no overflow), at
// least half the capped base, and what a handler asks for is capped too.
func FuzzBackoff(f *testing.F) {
	f.Add(int64(time.Second), int64(10*time.Minute), 3, int64(0))
	f.Add(int64(time.Second), int64(1_500_000*time.Hour), 70, int64(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), math.MaxInt, int64(math.MaxInt64))
	f.Add(int64(-1), int64(-1), -1, int64(-1))
	f.Add(int64(1), int64(1), 1, int64(1500*time.Millisecond))
	f.Fuzz(func(t *testing.T, base, max int64, retry int, asked int64) {
		b, m := time.Duration(base), time.Duration(max)
		limit := min(m, models.MaxRetryDelay)
		d := backoff(b, m, retry)
		if d < 0 || limit >= 0 && d > limit || limit < 0 && d != 0 {
			t.Fatalf("backoff(%s, %s, %d) = %s, want within [0, %s]", b, m, retry, d, limit)
		}
		if lo := min(b, limit); lo > 1 && d < lo/2 {
			t.Fatalf("backoff(%s, %s, %d) = %s, below half the base", b, m, retry, d)
		}
		rd := retryDelay(time.Duration(asked), b, m, retry)
		if rd < 0 || rd > models.MaxRetryDelay {
			t.Fatalf("retryDelay(%s, ...) = %s", time.Duration(asked), rd)
		}
	})
}
