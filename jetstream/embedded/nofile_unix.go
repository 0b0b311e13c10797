//go:build unix

package embedded

import "syscall"

// openFileLimit returns the process's open-file limit (RLIMIT_NOFILE, the
// soft one, which Go raises to the hard one at start), 0 if unknown.
func openFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return uint64(l.Cur)
}
