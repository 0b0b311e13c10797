package sdk

import "syscall"

// groupAttr puts the command in a group of its own, with SIGKILL when the
// thread that started it (and so the plugin) dies.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
