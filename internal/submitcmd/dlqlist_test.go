//go:build unix

package submitcmd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/submitcmd"
)

// deadRows are the task ids of a dlq list table, in its order.
func deadRows(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "fail" {
			ids = append(ids, f[0])
		}
	}
	return ids
}

var moreLine = regexp.MustCompile(`(?m)^more: omniq-submit (dlq list .*)$`)

// An operator with many dead tasks gets them a page at a time, newest
// first, with the total and the command for the next page, as list does.
func TestDeadLetterListPages(t *testing.T) {
	t.Parallel()
	o := start(t)
	var lines strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&lines, "{\"message\":\"broken %d\",\"permanent\":true}\n", i)
	}
	r := o.run(lines.String(), "batch", "fail", "-", "--max-retries", "0")
	r.want(t, 0, "", "submitted 60")
	ids := strings.Fields(r.stdout)
	for _, id := range ids {
		omniqtest.WaitDead(t, o.srv.Client, id, time.Minute)
	}
	// One more, dead after all the others: the first row of a page.
	o.run("", "fail", `{"message":"last","permanent":true}`, "--id", "newest", "--max-retries", "0", "--wait").want(t, 1, "", "last")
	omniqtest.WaitDead(t, o.srv.Client, "newest", time.Minute)

	r = o.run("", "dlq", "list")
	r.want(t, 0, "showing 50 of 61\n", "")
	if rows := deadRows(t, r.stdout); len(rows) != 50 || rows[0] != "newest" {
		t.Fatalf("dlq list: %d rows, first %v, want 50 starting with newest:\n%s", len(rows), rows[:min(1, len(rows))], r.stdout)
	}
	m := moreLine.FindStringSubmatch(r.stdout)
	if m == nil || !strings.HasPrefix(m[1], "dlq list --after ") {
		t.Fatalf("dlq list gives no next page command:\n%s", r.stdout)
	}
	seen := map[string]bool{}
	for _, id := range deadRows(t, r.stdout) {
		seen[id] = true
	}
	r = o.run("", strings.Fields(m[1])...)
	r.want(t, 0, "showing 11 of 61\n", "")
	if moreLine.MatchString(r.stdout) {
		t.Fatalf("the last page offers another:\n%s", r.stdout)
	}
	for _, id := range deadRows(t, r.stdout) {
		if seen[id] {
			t.Fatalf("%s on both pages", id)
		}
		seen[id] = true
	}
	if len(seen) != 61 {
		t.Fatalf("two pages listed %d tasks, want 61", len(seen))
	}

	// Smaller pages keep the filters and the limit.
	pages, listed := 0, 0
	args := []string{"dlq", "list", "--function", "fail", "--error-type", "handler_error", "--limit", "25"}
	for {
		r = o.run("", args...)
		r.want(t, 0, "of 61\n", "")
		pages++
		listed += len(deadRows(t, r.stdout))
		m := moreLine.FindStringSubmatch(r.stdout)
		if m == nil {
			break
		}
		if !strings.Contains(m[1], "--function fail --error-type handler_error --limit 25 --after ") {
			t.Fatalf("next page command %q lost the filters or limit", m[1])
		}
		args = strings.Fields(m[1])
	}
	if pages != 3 || listed != 61 {
		t.Fatalf("--limit 25: %d pages of %d tasks, want 3 of 61", pages, listed)
	}

	r = o.run("", "dlq", "list", "--limit", "5", "--json")
	var page struct {
		Tasks []struct {
			ID string `json:"id"`
		} `json:"tasks"`
		Total int    `json:"total"`
		Next  string `json:"next"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || len(page.Tasks) != 5 || page.Total != 61 || page.Next == "" || page.Tasks[0].ID != "newest" {
		t.Fatalf("dlq list --limit 5 --json = %q (%v)", r.stdout, err)
	}
	r = o.run("", "dlq", "list", "--limit", "5", "--after", page.Next, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || len(page.Tasks) != 5 || page.Tasks[0].ID == "newest" {
		t.Fatalf("dlq list --after from --json = %q (%v)", r.stdout, err)
	}

	o.run("", "dlq", "list", "--limit", "0").want(t, 2, "", "--limit must be at least 1")
	o.run("", "dlq", "list", "--after", "yesterday").want(t, 2, "", `--after "yesterday": not a cursor`)
	o.run("", "dlq", "list", "--after", "0").want(t, 2, "", `--after "0": not a cursor`)
}

// askThenFail answers a purge's question only after another task has been
// dead-lettered, as one can be while the operator reads it.
type askThenFail struct {
	o      *omniq
	t      *testing.T
	answer io.Reader
}

func (a *askThenFail) Read(p []byte) (int, error) {
	if a.answer == nil {
		a.o.run("", "fail", `{"message":"late","permanent":true}`, "--id", "late", "--max-retries", "0", "--wait").want(a.t, 1, "", "late")
		omniqtest.WaitDead(a.t, a.o.srv.Client, "late", time.Minute)
		a.answer = strings.NewReader("y\n")
	}
	return a.answer.Read(p)
}

// A purge deletes the entries it counted in its question, not one
// dead-lettered while the operator answered.
func TestDeadLetterPurgeDeletesWhatItCounted(t *testing.T) {
	t.Parallel()
	o := start(t)
	for i := 0; i < 3; i++ {
		o.run("", "fail", `{"message":"broken","permanent":true}`, "--id", fmt.Sprintf("p%d", i), "--max-retries", "0", "--wait").want(t, 1, "", "broken")
		omniqtest.WaitDead(t, o.srv.Client, fmt.Sprintf("p%d", i), time.Minute)
	}
	r := o.runIO(submitcmd.IO{Stdin: &askThenFail{o: o, t: t}, Terminal: true}, "dlq", "purge", "--function", "fail")
	r.want(t, 0, "purged 3 dead tasks", "Delete 3 dead tasks for good?")
	o.run("", "dlq", "show", "late").want(t, 0, "late", "")
	r = o.run("", "dlq", "list")
	r.want(t, 0, "showing 1 of 1\n", "")
}
