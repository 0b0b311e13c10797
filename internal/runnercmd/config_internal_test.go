package runnercmd

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestPluginPolicyAndSettingsReachThePluginHost(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "omniq.json")
	body := `{"plugin_policy": {"require_sha256": true, "user": "omniq-plugins"},
	  "plugins": {"echo": {"limits": {"memory_bytes": 268435456, "cpus": 1.5, "processes": 32}},
	              "faults": {"user": "65534"}}}`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Parse([]string{"--plugins-dir", t.TempDir(), "--config", cfg}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h := o.hostConfig()
	if d := h.Defaults.Process; !d.RequireSHA256 || d.User != "omniq-plugins" {
		t.Errorf("defaults = %+v, want the policy", d)
	}
	echo, faults := h.PerPlugin["echo"].Process, h.PerPlugin["faults"].Process
	if !echo.RequireSHA256 || echo.User != "omniq-plugins" || echo.Limits.MemoryBytes != 256<<20 || echo.Limits.CPUs != 1.5 || echo.Limits.Processes != 32 {
		t.Errorf("echo = %+v", echo)
	}
	if !faults.RequireSHA256 || faults.User != "65534" {
		t.Errorf("faults = %+v, want its own user under the policy", faults)
	}
}

// TestEverySettingReachesItsLibraryConfig writes every setting the config
// file has and finds each in the library Config it belongs to.
func TestEverySettingReachesItsLibraryConfig(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "omniq.json")
	body := `{
	  "defaults": {"max_retries": 5, "timeout": "1m", "backoff_base": "2s", "backoff_max": "3m", "concurrency": 8, "non_retryable": ["ValidationError"]},
	  "functions": {"resize": {"max_retries": 0, "timeout": "90s", "concurrency": 2}},
	  "plugins": {"echo": {"sha256": "` + strings.Repeat("ab", 32) + `", "concurrency": 4, "alone_processes": 2, "functions": ["echo", "noop"], "env": ["A=1"], "user": "u",
	              "limits": {"memory_bytes": 268435456, "cpus": 0.5, "cpu_seconds": 60, "open_files": 256, "processes": 8}}},
	  "plugin_policy": {"require_sha256": true, "user": "nobody"},
	  "streams": {"replicas": 1, "max_payload": 2097152, "dedupe_window": "5m", "dlq_max_age": "240h", "finished_ttl": "48h", "task_max_age": "720h"},
	  "limits": {"max_retries": 20, "max_timeout": "2h"},
	  "auth": {"users": [{"user": "app", "password": "pw", "role": "submitter"}], "nkeys": []}
	}`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Parse([]string{"--plugins-dir", t.TempDir(), "--config", cfg}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rc := o.runnerConfig()
	d := rc.Defaults
	if *d.MaxRetries != 5 || d.Timeout != time.Minute || d.BackoffBase != 2*time.Second || d.BackoffMax != 3*time.Minute || d.Concurrency != 8 || d.NonRetryable[0] != "ValidationError" {
		t.Errorf("defaults = %+v", d)
	}
	if f := rc.Functions["resize"]; *f.MaxRetries != 0 || f.Timeout != 90*time.Second || f.Concurrency != 2 {
		t.Errorf("functions.resize = %+v", f)
	}
	if rc.Limits != (runner.Limits{MaxRetries: 20, MaxTimeout: 2 * time.Hour}) {
		t.Errorf("limits = %+v", rc.Limits)
	}
	want := jetstream.Config{Replicas: 1, MaxPayload: 2 << 20, DedupeWindow: 5 * time.Minute, DLQMaxAge: 240 * time.Hour, FinishedTTL: 48 * time.Hour, TaskMaxAge: 720 * time.Hour}
	if got := o.streamsConfig(); got != want {
		t.Errorf("streams = %+v, want %+v", got, want)
	}
	p := o.hostConfig().PerPlugin["echo"]
	if p.Concurrency != 4 || p.AloneProcesses != 2 || !slices.Equal(p.AllowFunctions, []string{"echo", "noop"}) || p.Process.SHA256 != strings.Repeat("ab", 32) || p.Process.Env[0] != "A=1" || p.Process.User != "u" ||
		p.Process.Limits != (pluginhost.Limits{MemoryBytes: 256 << 20, CPUs: 0.5, CPUSeconds: 60, OpenFiles: 256, Processes: 8}) {
		t.Errorf("plugins.echo = %+v", p)
	}
	if u := o.File.Auth.Users[0]; u.User != "app" || u.Role != "submitter" {
		t.Errorf("auth.users = %+v", o.File.Auth.Users)
	}
}

func TestSnakeCase(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{"MaxPayload": "max_payload", "DLQMaxAge": "dlq_max_age", "FinishedTTL": "finished_ttl",
		"CPUs": "cpus", "CPUSeconds": "cpu_seconds", "Replicas": "replicas", "MemoryBytes": "memory_bytes"} {
		if got := snakeCase(name); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", name, got, want)
		}
	}
}
