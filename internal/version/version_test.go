package version_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/version"
)

func TestGetAndString(t *testing.T) {
	i := version.Get()
	if i.Version == "" || i.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", i)
	}
	s := i.String("omniq-x")
	if !strings.HasPrefix(s, "omniq-x "+i.Version) || !strings.HasSuffix(s, runtime.Version()) {
		t.Fatalf("String = %q", s)
	}
	withRev := version.Info{Version: "v1.2.3", Revision: "abc+dirty", GoVersion: "go1.26"}
	if got := withRev.String("omniq-x"); got != "omniq-x v1.2.3 (abc+dirty) go1.26" {
		t.Fatalf("String = %q", got)
	}
}
