package pluginhost_test

import (
	"errors"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestHostRoutesByFunction(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	testbin.Copy(t, echoPkg, dir)
	testbin.Copy(t, faultsPkg, dir)
	writeScriptIn(t, dir, "README.md", "not executable", 0o644)
	h, err := pluginhost.StartHost(ctx(t), pluginhost.HostConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Stop(ctx(t)) }()
	fns := h.Functions()
	if fns["echo"].Plugin != "echo" || fns["flaky"].Plugin != "faults" || len(fns) != 10 {
		t.Fatalf("functions = %v", fns)
	}
	if out := h.Execute(ctx(t), "echo", req("e", "", "hi"), time.Now().Add(10*time.Second), nil); string(out.Output) != "hi" {
		t.Fatalf("echo = %+v", out)
	}
	out := h.Execute(ctx(t), "missing", req("m", "", ""), time.Now().Add(10*time.Second), nil)
	if out.Failure == nil || out.Failure.ErrorType != "unknown_function" || out.Failure.Retryable {
		t.Fatalf("unknown function = %+v", out.Failure)
	}
}

func TestHostRefusesAFunctionServedTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	testbin.Copy(t, echoPkg, dir)
	other := t.TempDir()
	copyFile(t, testbin.Copy(t, echoPkg, other), dir, "echo2")
	_, err := pluginhost.StartHost(ctx(t), pluginhost.HostConfig{Dir: dir})
	if !errors.Is(err, pluginhost.ErrDuplicateFunction) {
		t.Fatalf("err = %v, want ErrDuplicateFunction", err)
	}
}

func TestHostMissingDirectory(t *testing.T) {
	t.Parallel()
	_, err := pluginhost.StartHost(ctx(t), pluginhost.HostConfig{Dir: "/nonexistent/plugins"})
	if err == nil {
		t.Fatal("missing plugins directory accepted")
	}
}
