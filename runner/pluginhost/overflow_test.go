package pluginhost

import (
	"math"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

func TestRestartDelayNeverOverflows(t *testing.T) {
	t.Parallel()
	const huge = time.Duration(math.MaxInt64)
	tests := []struct {
		base, max time.Duration
		crashes   int
		want      time.Duration
	}{
		{200 * time.Millisecond, 30 * time.Second, 1, 200 * time.Millisecond},
		{200 * time.Millisecond, 30 * time.Second, 3, 800 * time.Millisecond},
		{200 * time.Millisecond, 30 * time.Second, 100, 30 * time.Second},
		{time.Second, huge, 100, huge},
		{huge, huge, math.MaxInt, huge},
		{time.Minute, time.Second, 1, time.Second},
	}
	for _, tt := range tests {
		if got := restartDelay(tt.base, tt.max, tt.crashes); got != tt.want {
			t.Errorf("restartDelay(%s, %s, %d) = %s, want %s", tt.base, tt.max, tt.crashes, got, tt.want)
		}
	}
}

func TestRetryAfterFromAPluginSaturates(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int64]time.Duration{
		1500:          1500 * time.Millisecond,
		math.MaxInt64: math.MaxInt64,
		math.MinInt64: 0,
		-5:            0,
	} {
		if got := fromPlugin(&pluginpb.Failure{Message: "m", RetryAfterMs: ms}).RetryAfter; got != want {
			t.Errorf("retry_after_ms %d: RetryAfter %s, want %s", ms, got, want)
		}
	}
	if models.Milliseconds(math.MaxInt64/int64(time.Millisecond)+1) != math.MaxInt64 {
		t.Error("Milliseconds does not saturate")
	}
}
