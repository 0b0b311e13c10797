package jetstream

import (
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

func TestReplayOverridesNotCarriedBy(t *testing.T) {
	three, four := 3, 4
	rec := &models.Task{Timeout: models.Duration(10 * time.Second), MaxRetries: 3}
	for _, c := range []struct {
		name string
		o    ReplayOverrides
		want string
	}{
		{"nothing asked", ReplayOverrides{}, ""},
		{"the same timeout", ReplayOverrides{Timeout: 10 * time.Second}, ""},
		{"the same max retries", ReplayOverrides{MaxRetries: &three}, ""},
		{"both the same", ReplayOverrides{Timeout: 10 * time.Second, MaxRetries: &three}, ""},
		{"another timeout", ReplayOverrides{Timeout: time.Minute}, "timeout 10s, not 1m0s"},
		{"other max retries", ReplayOverrides{MaxRetries: &four}, "max retries 3, not 4"},
		{"both other", ReplayOverrides{Timeout: time.Minute, MaxRetries: &four}, "timeout 10s, not 1m0s and max retries 3, not 4"},
	} {
		if got := c.o.notCarriedBy(rec); got != c.want {
			t.Errorf("%s: notCarriedBy = %q, want %q", c.name, got, c.want)
		}
	}
}
