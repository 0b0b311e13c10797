//go:build unix && !linux

package sdk

import "syscall"

// groupAttr puts the command in a group of its own.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
