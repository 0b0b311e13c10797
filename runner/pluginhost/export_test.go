package pluginhost

// SetAfterChecksum makes StartProcess call f between the check of a binary
// and its start; the returned func undoes it. Not for parallel tests.
func SetAfterChecksum(f func(path string)) (undo func()) {
	afterChecksum = f
	return func() { afterChecksum = nil }
}

// UsesSession says whether p's attempts travel over one Session stream.
func (p *Process) UsesSession() bool { return p.sess != nil }
