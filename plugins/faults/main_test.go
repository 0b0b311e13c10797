package main

import (
	"os"
	"strings"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

func TestMain(m *testing.M) { os.Exit(sdktest.Main(m)) }

func TestFaultsInProcess(t *testing.T) {
	mux := newMux()
	tests := []struct {
		fn, payload string
		attempt     int
		wantOut     string
		wantType    string
		permanent   bool
		wantMsg     string
	}{
		{"fail", "", 1, "", "handler_error", false, "failure requested"},
		{"fail", `{"type":"Boom","message":"m","permanent":true,"retry_after_ms":5}`, 1, "", "Boom", true, "m"},
		{"fail", `nope`, 1, "", "ValidationError", true, "not a JSON object"},
		{"panic", "p", 1, "", "panic", false, "panic: p"},
		{"sleep", "1ms", 1, "slept 1ms", "", false, ""},
		{"sleep", "soon", 1, "", "ValidationError", true, "not a duration"},
		{"flaky", "2", 2, "", "handler_error", false, "attempt 2 of the 2"},
		{"flaky", "2", 3, "ok after 2 failures", "", false, ""},
		{"flaky", "x", 1, "", "ValidationError", true, "not a count"},
		{"crash", "weird", 1, "", "handler_error", true, `unknown mode "weird"`},
	}
	for _, tt := range tests {
		out := sdktest.Run(t, mux, sdk.Task{Function: tt.fn, Payload: []byte(tt.payload), Attempt: tt.attempt})
		if tt.wantType == "" {
			if out.Failure != nil || string(out.Output) != tt.wantOut {
				t.Errorf("%s(%s): %+v", tt.fn, tt.payload, out)
			}
			continue
		}
		f := out.Failure
		if f == nil || f.ErrorType != tt.wantType || f.Permanent != tt.permanent || !strings.Contains(f.Message, tt.wantMsg) {
			t.Errorf("%s(%s): failure %+v", tt.fn, tt.payload, f)
		}
	}
}

func TestFaultsPluginProcess(t *testing.T) {
	p := sdktest.StartPlugin(t, sdktest.Build(t, "github.com/omniq/omniq/plugins/faults"))
	if len(p.Functions()) != 9 {
		t.Fatalf("functions = %v", p.Functions())
	}
	out := p.Run(t, "oom", nil, nil, 0)
	if f := out.Failure; f == nil || !f.Permanent || !strings.Contains(f.Message, "give the plugin a memory limit") {
		t.Fatalf("oom without a limit: %+v", f)
	}
	out = p.Run(t, "sleep", []byte("600ms"), nil, 0)
	if out.Failure != nil || len(out.Progress) < 2 {
		t.Fatalf("sleep: %+v", out)
	}
	out = p.Run(t, "hang", nil, nil, 300*time.Millisecond)
	if f := out.Failure; f == nil || f.ErrorType != "timeout" || f.Message != "task did not finish within its 300ms timeout" {
		t.Fatalf("hang: %+v", f)
	}
	out = p.Run(t, "crash", []byte("7"), nil, 0)
	if f := out.Failure; f == nil || f.ErrorType != "plugin_crash" || !strings.Contains(f.Message, "exited with status 7") {
		t.Fatalf("crash 7: %+v", f)
	}
}

// OmniQ's default limit, half the machine's memory rounded down to a page,
// is no configured limit: taken for one on a machine whose half was not a
// whole number of pages (24,684,092 kB here), oom filled 12 GB.
func TestConfiguredLimit(t *testing.T) {
	const total = 24684092 << 10 // this machine's MemTotal
	page := uint64(4096)
	for _, tt := range []struct {
		limit, total uint64
		want         bool
	}{
		{total / 2 / page * page, total, false}, // OmniQ's default
		{total / 2, total, false},
		{9223372036854771712, total, false}, // cgroup v1's "unlimited"
		{1 << 30, total, true},
		{total / 4, total, true},
		{1 << 30, 0, true},
		{9223372036854771712, 0, false},
	} {
		if got := configuredLimit(tt.limit, tt.total); got != tt.want {
			t.Errorf("configuredLimit(%d, %d) = %v, want %v", tt.limit, tt.total, got, tt.want)
		}
	}
}
