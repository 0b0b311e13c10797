//go:build unix

package submitcmd_test

import (
	"strings"
	"testing"
)

// What kubectl, docker and nats users type for a command ("get ID" for
// status) is refused with the command to use, as a typo is, rather than
// taken for a function of that name ("unknown function \"get\"").
func TestOtherToolsWordsSuggestTheCommand(t *testing.T) {
	t.Parallel()
	for word, cmd := range map[string]string{"get": "status", "describe": "status", "ls": "list", "ps": "list", "tail": "watch", "stop": "cancel", "rm": "cancel"} {
		r := runArgs(t, word, "some-id")
		r.want(t, 2, "", "unknown command \""+word+"\" for \"omniq-submit\"\n\nDid you mean this?\n")
		if !strings.Contains(r.stderr, "\t"+cmd+"\n") || strings.Count(r.stderr, "\t"+cmd+"\n") > 1 {
			t.Errorf("%s: stderr %q; want %s suggested once", word, r.stderr, cmd)
		}
	}
}
