package pluginhost

// SetAfterChecksum makes StartProcess call f between the check of a binary
// and its start; the returned func undoes it. Not for parallel tests.
func SetAfterChecksum(f func(path string)) (undo func()) {
	afterChecksum = f
	return func() { afterChecksum = nil }
}

// UsesSession says whether p's attempts travel over one Session stream.
func (p *Process) UsesSession() bool { return p.sess != nil }

// SessionBatches returns how many messages carrying several requests p's
// session sent, and carrying several events it read.
func (p *Process) SessionBatches() (sent, read int64) {
	return p.sess.batchesSent.Load(), p.sess.batchesRead.Load()
}

// SetBeforeSessionSend makes every session's sender call f before each
// Send, once it has gathered the message; the returned func undoes it. Not
// for parallel tests.
func SetBeforeSessionSend(f func()) (undo func()) {
	beforeSessionSend = f
	return func() { beforeSessionSend = nil }
}

// SessionQueued is how many messages wait for p's session's sender.
func (p *Process) SessionQueued() int { return len(p.sess.queue) }

// SessionCalls is how many attempts p's session waits on.
func (p *Process) SessionCalls() int {
	p.sess.mu.Lock()
	defer p.sess.mu.Unlock()
	return len(p.sess.calls)
}

// WithReadRate returns c reading its plugin's stderr, stdout and stdio
// stream, and its events no attempt waits for, at bytesPerSecond each (and
// as many at once) instead of 4 MiB:
// a flood a loaded machine's runner reads more slowly than 4 MiB a second
// is no flood at that rate.
func WithReadRate(c ProcessConfig, bytesPerSecond int) ProcessConfig {
	c.readRate = bytesPerSecond
	return c
}

// AloneProcesses is how many processes of attempts alone run.
func (s *Supervisor) AloneProcesses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.aloneProcs)
}
