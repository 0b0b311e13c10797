//go:build unix

package submitcmd_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// list newest first stops reading at its page for the eye ("showing 5 of
// at least N"), but --json keeps "total" every match, as scripts read it
// (list25 had it give total_at_least in place of total), and --total
// counts them all in the table. The records are created a minute ahead of
// the server's clock, past list's allowance for clocks, so a list that may
// stop does so after its page.
func TestListJSONCountsEveryMatchWhereTheTableStopsAtItsPage(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{})
	o := &omniq{t: t, srv: s}
	const n = 40
	ahead := time.Now().Add(time.Minute)
	for i := range n {
		task := models.NewTask(fmt.Sprintf("ahead-%02d", i), "f", 3, 0, ahead.Add(time.Duration(i)*time.Millisecond))
		if _, err := s.Client.State().Create(omniqtest.Context(t), task); err != nil {
			t.Fatal(err)
		}
	}
	r := o.run("", "list", "--limit", "5")
	r.want(t, 0, "ahead-39", "")
	if !strings.Contains(r.stdout, "showing 5 of at least ") || strings.Contains(r.stdout, fmt.Sprintf("of at least %d ", n)) {
		t.Fatalf("list --limit 5 of %d records: want it to stop at its page, counting fewer than all:\n%s", n, r.stdout)
	}
	o.run("", "list", "--limit", "5", "--total").want(t, 0, fmt.Sprintf("showing 5 of %d\n", n), "")
	r = o.run("", "list", "--limit", "5", "--json")
	var page map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	if string(page["total"]) != fmt.Sprint(n) || page["total_at_least"] != nil {
		t.Fatalf("list --limit 5 --json of %d records = total %s: want every match counted\n%s", n, page["total"], r.stdout)
	}
}
