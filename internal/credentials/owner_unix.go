//go:build unix

package credentials

import (
	"fmt"
	"os"
	"syscall"
)

// ownedByUs checks that path belongs to this process's user: a directory
// or seed another user made (one who could write the data directory, such
// as a plugin's user) holds keys that user knows. Tools that only read a
// seed (omniq-submit as root, say) do not ask this.
func ownedByUs(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(s.Uid) == os.Geteuid() {
		return nil
	}
	return fmt.Errorf("%w: %s belongs to uid %d, not to this process's user (uid %d): whoever made it may know its keys; remove it, or chown it after checking it", ErrInsecure, path, s.Uid, os.Geteuid())
}
