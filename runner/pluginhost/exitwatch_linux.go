package pluginhost

import (
	"os"

	"golang.org/x/sys/unix"
)

// watchExit calls onExit once process pid (a child of the runner, not yet
// reaped) has exited, without reaping it: os/exec's Wait does that. It
// does nothing on a kernel without pidfds (before Linux 5.10). The
// goroutine it starts waits in the runtime's poller, not in a thread, and
// ends when the process does.
func watchExit(pid int, onExit func()) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return
	}
	go func() {
		defer f.Close()
		exited := false
		err := rc.Read(func(fd uintptr) bool {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
			exited = err != nil || info.Signo != 0 // an error: reaped already
			return exited
		})
		if err == nil && exited { // not when the poller cannot wait on a pidfd
			onExit()
		}
	}()
}
