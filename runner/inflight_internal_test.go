package runner

import "testing"

// TestRegisterAttempt walks which attempts of one task may be registered
// as running here, and that an ended attempt does not unregister the next.
func TestRegisterAttempt(t *testing.T) {
	type step struct {
		attempt  string // which attempt
		written  bool   // its claim is written
		settling string // mark this attempt settling first ("" none)
		end      string // unregister this attempt instead ("" none)
		want     bool   // registered
		running  string // the attempt registered after the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a first attempt registers", []step{
			{attempt: "a", want: true, running: "a"},
		}},
		{"a deferred copy while another runs is refused", []step{
			{attempt: "a", want: true, running: "a"},
			{attempt: "b", want: false, running: "a"},
		}},
		{"a written claim registers over another copy", []step{
			{attempt: "a", want: true, running: "a"},
			{attempt: "b", written: true, want: true, running: "b"},
		}},
		{"the next attempt registers while the last records its outcome", []step{
			{attempt: "a", want: true, running: "a"},
			{attempt: "b", settling: "a", want: true, running: "b"},
		}},
		{"the last attempt ending late leaves the next registered", []step{
			{attempt: "a", written: true, want: true, running: "a"},
			{attempt: "b", written: true, settling: "a", want: true, running: "b"},
			{end: "a", running: "b"},
			{end: "b", running: ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := map[string]*inflight{}
			attempts := map[string]*inflight{}
			get := func(name string) *inflight {
				if attempts[name] == nil {
					attempts[name] = &inflight{}
				}
				return attempts[name]
			}
			for i, s := range tt.steps {
				if s.settling != "" {
					get(s.settling).settling.Store(true)
				}
				if s.end != "" {
					unregisterAttempt(running, "t1", get(s.end))
				} else if got := registerAttempt(running, "t1", get(s.attempt), s.written); got != s.want {
					t.Fatalf("step %d: register %s = %v, want %v", i, s.attempt, got, s.want)
				}
				switch {
				case s.running == "" && running["t1"] != nil:
					t.Fatalf("step %d: an attempt is still registered", i)
				case s.running != "" && running["t1"] != get(s.running):
					t.Fatalf("step %d: the registered attempt is not %s", i, s.running)
				}
			}
		})
	}
}
