package runner

import (
	"testing"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestAPluginsDeclarationsAreClampedIntoRange: the SDKs refuse negative
// settings, but a plugin speaking the protocol itself can declare
// anything; the runner cannot fix a plugin, so it clamps.
func TestAPluginsDeclarationsAreClampedIntoRange(t *testing.T) {
	t.Parallel()
	decl := pluginhost.Function{Spec: &pluginpb.FunctionSpec{Name: "f", MaxRetries: -5, HasMaxRetries: true,
		DefaultTimeoutMs: -1, Concurrency: -3}}
	res := Config{}.resolve("f", decl)
	if res.maxRetries != 0 || res.timeout != DefaultTimeout || res.concurrency != DefaultConcurrency {
		t.Fatalf("resolved %+v from a declaration of max_retries -5, timeout -1 ms, concurrency -3", res)
	}
	decl.Spec = &pluginpb.FunctionSpec{Name: "f", DefaultTimeoutMs: 1 << 62, Concurrency: 1 << 30}
	if res := (Config{}).resolve("f", decl); res.timeout != models.MaxTimeout || res.concurrency != MaxConcurrency {
		t.Fatalf("resolved timeout %s, concurrency %d from huge declarations", res.timeout, res.concurrency)
	}
}
