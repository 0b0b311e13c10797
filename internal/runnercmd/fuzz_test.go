package runnercmd

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
)

// FuzzConfigFile: any config file is accepted or refused as a usage error
// that names --config or the runner setting at fault (never a panic); an accepted one is within every
// range, so nothing computed from it overflows.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"defaults": {"max_retries": 5, "timeout": "30s", "backoff_base": "1s", "backoff_max": "10m", "concurrency": 8, "non_retryable": ["ValidationError"]}}`))
	f.Add([]byte(`{"functions": {"resize": {"backoff_max": "1500000h"}}, "streams": {"max_payload": 4294967296}}`))
	f.Add([]byte(`{"plugins": {"echo": {"sha256": "` + strings.Repeat("ab", 32) + `", "concurrency": 4, "env": ["A=b"], "limits": {"memory_bytes": 1073741824}}}}`))
	f.Add([]byte(`{"streams": {"replicas": 1, "dedupe_window": "2m", "dlq_max_age": "720h", "finished_ttl": "168h", "task_max_age": "9999999999h"}}`))
	plugins := f.TempDir()
	f.Fuzz(func(t *testing.T, file []byte) {
		path := filepath.Join(t.TempDir(), "omniq.json")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := Parse([]string{"--plugins-dir", plugins, "--config", path}, func(string) string { return "" }, io.Discard)
		if err != nil {
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--config") && !strings.Contains(err.Error(), "invalid runner config: ") {
				t.Fatalf("refused without naming --config or the runner setting: %v", err)
			}
			return
		}
		rc := o.runnerConfig().WithDefaults()
		for name, fc := range rc.Functions {
			checkFunction(t, "functions."+name, fc)
		}
		checkFunction(t, "defaults", rc.Defaults)
		sc := o.streamsConfig().WithDefaults()
		if n := sc.ServerPayloadNeeded(); n <= 0 || n > 64<<20 {
			t.Fatalf("streams need a max_payload of %d bytes", n)
		}
		if sc.MaxPayload < 0 || sc.MaxPayload > jetstream.MaxMaxPayload {
			t.Fatalf("max_payload %d accepted", sc.MaxPayload)
		}
	})
}

func checkFunction(t *testing.T, where string, fc runner.FunctionConfig) {
	t.Helper()
	switch {
	case fc.Timeout < 0 || fc.Timeout > models.MaxTimeout,
		fc.BackoffBase < 0 || fc.BackoffBase > models.MaxRetryDelay,
		fc.BackoffMax < 0 || fc.BackoffMax > models.MaxRetryDelay,
		fc.Concurrency < 0 || fc.Concurrency > runner.MaxConcurrency,
		fc.MaxRetries != nil && *fc.MaxRetries < 0:
		t.Fatalf("%s accepted out of range: %+v", where, fc)
	}
}
