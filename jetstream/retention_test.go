package jetstream_test

import (
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
)

// Every message a runner leaves in the functions bucket expires. A runner
// gets a new id at each start, and its deregistration at shutdown used to
// leave a purge marker per function that no TTL removed (the bucket keeps
// one message per key, the marker, and has no max age): every clean
// restart added markers for good, and Functions read them all. Found by
// counting the bucket's messages across runner restarts.
func TestDeregistrationLeavesNothingForever(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for _, runner := range []string{"r1", "r2", "r3"} {
		regs := []jetstream.Registration{{Function: "echo"}, {Function: "sleep"}}
		if err := e.client.Register(ctx(t), runner, regs, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Deregister(ctx(t), runner, []string{"echo", "sleep"}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := e.client.JetStream().Stream(ctx(t), "KV_OMNIQ_FUNCTIONS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx(t), natsjs.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 6 {
		t.Fatalf("the bucket holds %d keys, want the 6 deregistered ones: %v", len(info.State.Subjects), info.State.Subjects)
	}
	for subject := range info.State.Subjects {
		m, err := s.GetLastMsgForSubject(ctx(t), subject)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(natsjs.MsgTTLHeader) == "" {
			t.Errorf("%s: the deregistration's marker has no %s header: it stays for good (headers %v)", subject, natsjs.MsgTTLHeader, m.Header)
		}
	}
	fns, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 0 {
		t.Fatalf("Functions = %v after every runner deregistered, want none", fns)
	}
}
