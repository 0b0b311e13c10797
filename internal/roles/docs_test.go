package roles_test

import (
	"os"
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
)

// docs/security.md shows the snippet for the default names: it must be the
// current one.
func TestSecurityDocShowsTheCurrentSnippet(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	snippet, err := roles.ServerConfig(jetstream.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), snippet) {
		t.Fatalf("docs/security.md does not contain the current snippet; put this in it:\n%s", snippet)
	}
}
