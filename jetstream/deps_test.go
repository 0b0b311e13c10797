package jetstream_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that only submits tasks must not link nats-server: package
// jetstream and omniq-submit stay clear of it (the embedded server is in
// jetstream/embedded).
func TestSubmittersDoNotLinkNATSServer(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	for _, pkg := range []string{"github.com/omniq/omniq/jetstream", "github.com/omniq/omniq/cmd/omniq-submit"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/nats-io/nats-server") {
				t.Errorf("%s depends on %s", pkg, dep)
				break
			}
		}
	}
}
