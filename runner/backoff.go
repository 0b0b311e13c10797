package runner

import (
	"math/rand/v2"
	"time"

	"github.com/omniq/omniq/models"
)

// backoff returns the delay before retry number retry+1: base doubled per
// retry already made, capped at max (and at models.MaxRetryDelay), with
// "equal jitter" (a random point in the upper half) so retries of many
// tasks that failed together spread out. It never overflows: any base, max
// and retry give a delay in [0, min(max, models.MaxRetryDelay)].
func backoff(base, max time.Duration, retry int) time.Duration {
	max = min(max, models.MaxRetryDelay)
	d := min(base, max)
	if d <= 0 {
		return 0
	}
	for i := 0; i < retry && d < max; i++ {
		if d > max/2 {
			d = max
			break
		}
		d *= 2
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// retryDelay is the delay before the next retry: what the handler asked
// for (capped at models.MaxRetryDelay), or the backoff.
func retryDelay(asked, base, max time.Duration, retry int) time.Duration {
	if asked > 0 {
		return min(asked, models.MaxRetryDelay)
	}
	return backoff(base, max, retry)
}
