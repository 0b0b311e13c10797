//go:build unix

package submitcmd_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// list newest first stops reading at its page for the eye ("showing 5 of
// at least N"), but --json keeps "total" every match, as scripts read it
// (list25 gave total_at_least in place of total), and --total counts them
// all in the table. A list may stop only past its clock allowance (10 s)
// and its first window (4,096 messages): the older records are written
// more than 11 s before the newest, which is what the test waits for.
func TestListJSONCountsEveryMatchWhereTheTableStopsAtItsPage(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{})
	o := &omniq{t: t, srv: s}
	const old, recent = 4200, 10
	first := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < old; i += 8 {
				if _, err := s.Client.State().Create(omniqtest.Context(t), models.NewTask(fmt.Sprintf("old-%04d", i), "f", 3, 0, time.Now())); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Not for ordering: the elapsed time is the condition, a list's
	// allowance for runners' clocks ahead of the server's.
	time.Sleep(time.Until(first.Add(11 * time.Second)))
	for i := range recent {
		if _, err := s.Client.State().Create(omniqtest.Context(t), models.NewTask(fmt.Sprintf("recent-%d", i), "f", 3, 0, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	const n = old + recent
	r := o.run("", "list", "--limit", "5")
	r.want(t, 0, "recent-9", "")
	if !strings.Contains(r.stdout, "showing 5 of at least ") || strings.Contains(r.stdout, fmt.Sprintf("of %d records", n)) {
		t.Fatalf("list --limit 5 of %d records: want it to stop at its page, counting fewer than all:\n%s", n, r.stdout)
	}
	o.run("", "list", "--limit", "5", "--total").want(t, 0, fmt.Sprintf("showing 5 of %s\n", thousands(n)), "")
	r = o.run("", "list", "--limit", "5", "--json")
	var page map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	if string(page["total"]) != fmt.Sprint(n) || page["total_at_least"] != nil {
		t.Fatalf("list --limit 5 --json of %d records = total %s: want every match counted", n, page["total"])
	}
}

// thousands writes n as omniq-submit does, with commas.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
