//go:build !unix

package embedded

// openFileLimit returns 0 (unknown) where there is no RLIMIT_NOFILE.
func openFileLimit() uint64 { return 0 }
