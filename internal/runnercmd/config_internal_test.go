package runnercmd

import (
	"io"
	"os"
	"path/filepath"
	"testing"
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
