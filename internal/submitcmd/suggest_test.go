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

// A missing or extra argument names the command once (the line already
// starts with "omniq-submit: ") and points to its help.
func TestArgumentCountErrorsNameTheCommandOnce(t *testing.T) {
	t.Parallel()
	runArgs(t, "status").want(t, 2, "", "omniq-submit: status takes one task id, got 0 arguments (see omniq-submit status -h)\n")
	runArgs(t, "dlq", "show", "a", "b").want(t, 2, "", "omniq-submit: dlq show takes one task id, got 2 arguments (see omniq-submit dlq show -h)\n")
	runArgs(t, "functions", "x").want(t, 2, "", "omniq-submit: functions takes no arguments, got \"x\" (see omniq-submit functions -h)\n")
	// batch said only "want FUNCTION [FILE|-], or --jsonl [FILE|-]",
	// naming neither itself nor its help.
	runArgs(t, "batch").want(t, 2, "", "omniq-submit: batch takes FUNCTION [FILE|-], or --jsonl [FILE|-]; got 0 arguments (see omniq-submit batch -h)\n")
	runArgs(t, "batch", "--jsonl", "a", "b").want(t, 2, "", "omniq-submit: batch takes FUNCTION [FILE|-], or --jsonl [FILE|-]; got 2 arguments (see omniq-submit batch -h)\n")
}

// dlq replay's --max-retries, left out, keeps each task's own budget; its
// refusal of -1 said "leave it out for the function's default".
func TestANegativeMaxRetriesSaysWhatLeavingItOutMeans(t *testing.T) {
	t.Parallel()
	runArgs(t, "dlq", "replay", "--max-retries", "-1", "x").want(t, 2, "", "must be 0 or more, got -1 (leave it out for each task's own)")
	runArgs(t, "echo", "--max-retries", "-1", "x").want(t, 2, "", "must be 0 or more, got -1 (leave it out for the function's default)")
}

// An empty function name (an unset shell variable: omniq-submit "$FN" x)
// is said to be missing, not met with every command as a suggestion.
func TestEmptyFunctionNameIsNamed(t *testing.T) {
	t.Parallel()
	r := runArgs(t, "", "payload")
	r.want(t, 2, "", "omniq-submit: invalid function name: function is required\n")
	if strings.Contains(r.stderr, "Did you mean") {
		t.Fatalf("stderr suggests commands: %q", r.stderr)
	}
	// A bad name is refused before anything is read or reached: no
	// server listens here.
	runArgs(t, "submit", "", "x").want(t, 2, "", "omniq-submit: invalid function name: function is required\n")
	runArgs(t, "bad.name", "@/nonexistent").want(t, 2, "", `function "bad.name" has '.' at byte 3`)
}
