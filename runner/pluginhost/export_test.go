package pluginhost

// SetAfterChecksum makes StartProcess call f between the check of a binary
// and its start; the returned func undoes it. Not for parallel tests.
func SetAfterChecksum(f func(path string)) (undo func()) {
	afterChecksum = f
	return func() { afterChecksum = nil }
}
