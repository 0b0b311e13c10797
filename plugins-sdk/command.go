package sdk

import (
	"context"
	"os/exec"
	"time"
)

// CommandWaitDelay is how long Wait, on a command made by Command, waits
// for the command's output to close once its context has ended and the
// command was killed; then it closes the pipes itself and returns.
const CommandWaitDelay = time.Second

// Command is exec.CommandContext for a handler: use it for a child process
// that must stop when the attempt does.
//
// exec.CommandContext kills only the process it started. A command run
// through a shell ("sh -c 'convert ...'") leaves the shell's children
// running at the attempt's deadline or cancellation, holding the output
// pipe open, so Wait (and Output, Run, CombinedOutput) blocks until they
// end: the handler outlives its deadline, and the runner kills the whole
// plugin, failing every task in flight on it as "plugin_crash".
//
// On Unix, the command made by Command runs in a process group of its own
// and, when ctx ends, the whole group is killed (SIGKILL): the command and
// everything it started that stayed in its group. Wait then returns within
// CommandWaitDelay even if a process outside the group holds its output
// open. The command also gets SIGKILL if the plugin's thread that started
// it dies (Linux's parent-death signal). On other systems only the
// command itself is killed, as by exec.CommandContext, and Wait is bounded
// the same way.
//
// What the command leaves running in its group when it exits by itself
// ("sh -c 'server &'") is not stopped: Wait returns once the command has
// exited, with exec.ErrWaitDelay CommandWaitDelay later if such a process
// holds the output open; kill the group yourself then
// (syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) on Unix), or it runs
// until the plugin ends.
//
// Change Cancel, SysProcAttr or WaitDelay of the returned command only if
// you mean to undo this. Like exec.CommandContext, it panics if ctx is nil.
func Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, arg...)
	ownGroup(cmd)
	cmd.WaitDelay = CommandWaitDelay
	return cmd
}
