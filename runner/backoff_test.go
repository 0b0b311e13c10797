package runner

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

func TestBackoffNeverOverflows(t *testing.T) {
	t.Parallel()
	const huge = time.Duration(math.MaxInt64)
	tests := []struct {
		name           string
		base, max      time.Duration
		retry          int
		wantLo, wantHi time.Duration
	}{
		{"first retry", time.Second, 10 * time.Minute, 0, 500 * time.Millisecond, time.Second},
		{"doubles", time.Second, 10 * time.Minute, 3, 4 * time.Second, 8 * time.Second},
		{"capped", time.Second, 10 * time.Minute, 30, 5 * time.Minute, 10 * time.Minute},
		{"retry count huge", time.Second, 10 * time.Minute, math.MaxInt, 5 * time.Minute, 10 * time.Minute},
		{"max above 1.28 million hours", time.Second, 1_500_000 * time.Hour, 70, models.MaxRetryDelay / 2, models.MaxRetryDelay},
		{"max is the largest duration", time.Second, huge, 100, models.MaxRetryDelay / 2, models.MaxRetryDelay},
		{"base is the largest duration", huge, huge, 5, models.MaxRetryDelay / 2, models.MaxRetryDelay},
		{"base over max", time.Hour, time.Minute, 0, 30 * time.Second, time.Minute},
		{"zero base", 0, time.Minute, 10, 0, 0},
		{"negative base", -time.Second, time.Minute, 10, 0, 0},
		{"negative max", time.Second, -time.Minute, 10, 0, 0},
		{"one nanosecond", 1, 1, 10, 1, 1},
	}
	for _, tt := range tests {
		for i := 0; i < 50; i++ {
			if d := backoff(tt.base, tt.max, tt.retry); d < tt.wantLo || d > tt.wantHi {
				t.Fatalf("%s: backoff(%s, %s, %d) = %s, want [%s, %s]", tt.name, tt.base, tt.max, tt.retry, d, tt.wantLo, tt.wantHi)
			}
		}
	}
}

func TestRetryDelayCapsWhatTheHandlerAsks(t *testing.T) {
	t.Parallel()
	if d := retryDelay(time.Duration(math.MaxInt64), time.Second, time.Minute, 0); d != models.MaxRetryDelay {
		t.Fatalf("asked for the largest duration: %s", d)
	}
	if d := retryDelay(1500*time.Millisecond, time.Second, time.Minute, 9); d != 1500*time.Millisecond {
		t.Fatalf("asked for 1.5s: %s", d)
	}
	if d := retryDelay(0, time.Second, time.Minute, 0); d < 500*time.Millisecond || d > time.Second {
		t.Fatalf("asked for nothing: %s", d)
	}
}

func TestSettingsOverTheirRangeAreRefused(t *testing.T) {
	t.Parallel()
	n := -1
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"backoff_max above 1.28 million hours", Config{Defaults: FunctionConfig{BackoffMax: 1_500_000 * time.Hour}}, "defaults: backoff_max must be between 0 and 8760h0m0s, got 1500000h0m0s"},
		{"backoff_base", Config{Functions: map[string]FunctionConfig{"f": {BackoffBase: math.MaxInt64}}}, "function f: backoff_base must be between 0 and 8760h0m0s"},
		{"timeout", Config{Defaults: FunctionConfig{Timeout: 200 * 365 * 24 * time.Hour}}, "defaults: timeout must be between 0 and 8760h0m0s"},
		{"concurrency", Config{Defaults: FunctionConfig{Concurrency: math.MaxInt}}, "defaults: concurrency must be between 0 and 10000"},
		{"max_retries", Config{Defaults: FunctionConfig{MaxRetries: &n}}, "defaults: max_retries must be >= 0, got -1"},
		{"empty non_retryable", Config{Defaults: FunctionConfig{NonRetryable: []string{"timeout", ""}}}, `defaults: non_retryable[1] "" is no error type a failure can have`},
		{"padded non_retryable", Config{Functions: map[string]FunctionConfig{"f": {NonRetryable: []string{"CardDeclined "}}}}, `function f: non_retryable[0] "CardDeclined " is no error type`},
		{"ack wait", Config{AckWait: math.MaxInt64}, "AckWait must be between 0 and 24h0m0s"},
		{"claim delay", Config{ClaimDelay: 2 * time.Second}, "ClaimDelay must be between 0 and 1s, got 2s"},
		{"negative claim delay", Config{ClaimDelay: -time.Millisecond}, "ClaimDelay must be between 0 and 1s, got -1ms"},
		{"sweep interval", Config{SweepInterval: -time.Second}, "SweepInterval must be between 0 and 24h0m0s, got -1s"},
		{"shutdown grace", Config{ShutdownGrace: -time.Second}, "ShutdownGrace must be between 0 and 24h0m0s, got -1s"},
		{"registration ttl", Config{RegistrationTTL: 48 * time.Hour}, "RegistrationTTL must be between 0 and 24h0m0s, got 48h0m0s"},
	}
	for _, tt := range tests {
		err := tt.cfg.ValidateSettings()
		if err == nil || !strings.HasPrefix(err.Error(), "invalid runner config: "+tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
