package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// What a build for another system says (main_other.go); make cross and CI
// check that such builds compile.
func TestNeedsLinuxSaysSoAndExits2(t *testing.T) {
	var out bytes.Buffer
	if code := needsLinux(&out, "darwin"); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.HasPrefix(out.String(), "omniq-runner needs Linux") || !strings.Contains(out.String(), "darwin") {
		t.Fatalf("message %q does not say the runner needs Linux", out.String())
	}
}
