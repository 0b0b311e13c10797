package runner

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before retry number retry+1: base doubled per
// retry already made, capped at max, with "equal jitter" (a random point in
// the upper half) so retries of many tasks that failed together spread out.
func backoff(base, max time.Duration, retry int) time.Duration {
	d := base
	for i := 0; i < retry && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
