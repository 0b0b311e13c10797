package dashboard

import (
	"fmt"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

func task(id, fn string, st models.TaskStatus, created time.Time) *models.Task {
	t := models.NewTask(id, fn, 0, 0, created)
	t.Status = st
	t.UpdatedAt = created
	if st.IsTerminal() {
		t.FinishedAt = created
	}
	if st == models.StatusFailed {
		t.Error = &models.TaskError{ErrorType: "panic", Message: "x"}
	}
	return t
}

// TestIndexPagesNewestFirst: with 100,000 records, pages come newest first,
// follow each other without gaps or repeats, and filters apply.
func TestIndexPagesNewestFirst(t *testing.T) {
	x := newIndex(0, "OMNIQ_TASKS", nil)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 100_000
	for i := range n {
		st := models.StatusSucceeded
		if i%10 == 0 {
			st = models.StatusFailed
		}
		x.put(task(fmt.Sprintf("t%06d", i), []string{"echo", "fail"}[i%2], st, base.Add(time.Duration(i)*time.Millisecond)))
	}
	seen := 0
	cursor := ""
	prev := ""
	for {
		rows, next := x.query(taskQuery{Before: cursor, Limit: 1000})
		for _, r := range rows {
			if prev != "" && r.ID >= prev {
				t.Fatalf("row %s after %s: not newest first", r.ID, prev)
			}
			prev = r.ID
			seen++
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != n {
		t.Fatalf("paged through %d rows, want %d", seen, n)
	}
	rows, _ := x.query(taskQuery{Function: "echo", Status: models.StatusFailed, ErrorType: "panic", Limit: 3})
	if len(rows) != 3 || rows[0].ID != "t099990" || rows[1].ID != "t099980" {
		t.Fatalf("filtered rows = %+v", rows)
	}
	rows, next := x.query(taskQuery{Since: base.Add(99_998 * time.Millisecond), Limit: 10})
	if len(rows) != 2 || next != "" {
		t.Fatalf("since filter: %d rows, next %q", len(rows), next)
	}
	// An update moves nothing; a delete removes.
	x.put(task("t099999", "fail", models.StatusCancelled, base.Add(99_999*time.Millisecond)))
	x.remove("t099998")
	rows, _ = x.query(taskQuery{Limit: 2})
	if rows[0].ID != "t099999" || rows[0].Status != models.StatusCancelled || rows[1].ID != "t099997" {
		t.Fatalf("after update and delete: %+v", rows)
	}
}

// TestIndexBounded: past its limit the index drops the oldest finished
// tasks first and keeps unfinished ones.
func TestIndexBounded(t *testing.T) {
	x := newIndex(1000, "OMNIQ_TASKS", nil)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	x.put(task("old-running", "echo", models.StatusRunning, base))
	for i := range 5000 {
		x.put(task(fmt.Sprintf("t%05d", i), "echo", models.StatusSucceeded, base.Add(time.Duration(i+1)*time.Second)))
	}
	held, dropped := x.size()
	if held > 1000 || held+dropped != 5001 {
		t.Fatalf("held %d, dropped %d: want at most 1000 held, 5001 in all", held, dropped)
	}
	rows, _ := x.query(taskQuery{Status: models.StatusRunning, Limit: 10})
	if len(rows) != 1 || rows[0].ID != "old-running" {
		t.Fatalf("the unfinished task was dropped: %+v", rows)
	}
	rows, _ = x.query(taskQuery{Limit: 1})
	if rows[0].ID != "t04999" {
		t.Fatalf("newest = %s, want t04999", rows[0].ID)
	}
}

// TestIndexStats: the overview's counts and per-minute buckets.
func TestIndexStats(t *testing.T) {
	x := newIndex(0, "OMNIQ_TASKS", nil)
	now := time.Now()
	x.put(task("a", "echo", models.StatusSucceeded, now.Add(-30*time.Second)))
	x.put(task("b", "echo", models.StatusFailed, now.Add(-90*time.Second)))
	x.put(task("c", "echo", models.StatusSucceeded, now.Add(-2*time.Hour)))
	x.put(task("d", "echo", models.StatusRunning, now))
	x.put(task("e", "echo", models.StatusRetrying, now))
	late := task("f", "echo", models.StatusPending, now)
	late.RunAt = now.Add(time.Hour)
	x.put(late)
	s := x.stats(now)["echo"]
	if s.Succeeded1h != 1 || s.Failed1h != 1 || s.Running != 1 || s.Retrying != 1 || s.Delayed != 1 {
		t.Fatalf("stats = %+v", s)
	}
	if s.SucceededPerMin[buckets-1] != 1 || s.FailedPerMin[buckets-2] != 1 {
		t.Fatalf("buckets: last %d, previous failed %d", s.SucceededPerMin[buckets-1], s.FailedPerMin[buckets-2])
	}
}
