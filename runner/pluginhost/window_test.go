package pluginhost_test

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/omniq/omniq/runner/pluginhost"
)

// TestPluginCallsWithoutFlowControlPings: a plugin call is one write each
// way. With gRPC's dynamic flow-control windows, each message received
// while no bandwidth probe was out had its receiver send a window update
// and a ping (BDP estimation), which the other side answered: about two
// writes of the runner's per call, and as many of the plugin's.
//
// Not parallel: it counts the write system calls of the whole test
// process, which then runs nothing else.
func TestPluginCallsWithoutFlowControlPings(t *testing.T) {
	s := startSupervisor(t, echoPkg, pluginhost.Config{})
	call := func(i int) {
		out := s.Execute(ctx(t), req("w"+strconv.Itoa(i), "noop", "x"), time.Time{}, nil)
		if out.Failure != nil {
			t.Fatalf("noop: %+v", out.Failure)
		}
	}
	for i := range 20 { // the session is open, the plugin's workers started
		call(i)
	}
	const calls = 200
	before := writeSyscalls(t)
	for i := range calls {
		call(20 + i)
	}
	perCall := float64(writeSyscalls(t)-before) / calls
	t.Logf("%.2f writes per call", perCall)
	if perCall >= 1.5 {
		t.Errorf("%.2f write system calls per plugin call, want 1 (the request)", perCall)
	}
}

// writeSyscalls is how many write system calls this process has made.
func writeSyscalls(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no write count: %v", err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("syscw: ")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no syscw in /proc/self/io: %s", b)
	return 0
}
