package pluginhost_test

import (
	"syscall"
	"testing"

	"github.com/omniq/omniq/runner/pluginhost"
)

func TestExitInfoSaysWhyAProcessEnded(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    pluginhost.ExitInfo
		want string
	}{
		{"an exit status", pluginhost.ExitInfo{Code: 3}, "exited with status 3"},
		{"out of memory", pluginhost.ExitInfo{Signal: syscall.SIGKILL, OutOfMemory: true}, "killed by signal SIGKILL (out of memory)"},
		{"the CPU time limit", pluginhost.ExitInfo{Signal: syscall.SIGKILL, CPUTimeLimit: true}, "killed by signal SIGKILL (CPU time limit)"},
		// The kernel's kill came first; the runner's clean-up of the dead
		// plugin raced Wait and marked it killed too.
		{"the CPU time limit, killed again on clean-up", pluginhost.ExitInfo{Signal: syscall.SIGKILL, CPUTimeLimit: true, Killed: true}, "killed by signal SIGKILL (CPU time limit)"},
		{"SIGXCPU", pluginhost.ExitInfo{Signal: syscall.SIGXCPU}, "killed by signal SIGXCPU (CPU time limit)"},
		{"the process limit", pluginhost.ExitInfo{Code: 2, ProcessLimit: true}, "exited with status 2 (process limit reached)"},
		{"a SIGKILL nobody here sent", pluginhost.ExitInfo{Signal: syscall.SIGKILL}, "killed by signal SIGKILL (likely the kernel's out-of-memory killer, or an operator)"},
		{"a SIGKILL the runner sent", pluginhost.ExitInfo{Signal: syscall.SIGKILL, Killed: true}, "killed by signal SIGKILL"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
