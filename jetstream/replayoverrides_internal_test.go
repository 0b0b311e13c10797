package jetstream

import (
	"testing"
	"time"
)

func TestReplayOverridesNotCarriedBy(t *testing.T) {
	three, four := 3, 4
	for _, c := range []struct {
		name       string
		o          ReplayOverrides
		timeout    time.Duration
		maxRetries int
		hasMax     bool
		want       string
	}{
		{"nothing asked", ReplayOverrides{}, 10 * time.Second, 3, true, ""},
		{"nothing asked, message without values", ReplayOverrides{}, 0, 0, false, ""},
		{"the same timeout", ReplayOverrides{Timeout: 10 * time.Second}, 10 * time.Second, 3, true, ""},
		{"the same max retries", ReplayOverrides{MaxRetries: &three}, 10 * time.Second, 3, true, ""},
		{"both the same", ReplayOverrides{Timeout: 10 * time.Second, MaxRetries: &three}, 10 * time.Second, 3, true, ""},
		{"another timeout", ReplayOverrides{Timeout: time.Minute}, 10 * time.Second, 3, true, "timeout 10s, not 1m0s"},
		{"other max retries", ReplayOverrides{MaxRetries: &four}, 10 * time.Second, 3, true, "max retries 3, not 4"},
		{"both other", ReplayOverrides{Timeout: time.Minute, MaxRetries: &four}, 10 * time.Second, 3, true,
			"timeout 10s, not 1m0s and max retries 3, not 4"},
		{"message without a timeout", ReplayOverrides{Timeout: time.Minute}, 0, 3, true, "the function's timeout, not 1m0s"},
		{"message without max retries", ReplayOverrides{MaxRetries: &three}, 10 * time.Second, 0, false, "the function's max retries, not 3"},
	} {
		if got := c.o.notCarriedBy(c.timeout, c.maxRetries, c.hasMax); got != c.want {
			t.Errorf("%s: notCarriedBy = %q, want %q", c.name, got, c.want)
		}
	}
}
