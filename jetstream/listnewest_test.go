package jetstream_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A list newest first reads the end of the bucket, not the bucket: it read
// every record for a page of 10 (150,000 records took 5 s, list25), and
// now reads back from the stream's end until no record it has not read
// can be on the page. Its pages are those a list of the whole bucket
// gives. The records are written one at a time, each created after the
// one before was stored, and the clock allowance is 0, as for a runner
// whose clock is the server's.
func TestStateListNewestFirstReadsTheEndOfTheBucket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	state := e.client.State()
	state.SetScanBatch(100)
	state.SetListSkew(0)
	const n = 2000
	for i := range n {
		task := models.NewTask(fmt.Sprintf("n%04d", i), []string{"f", "g"}[i%2], 3, 0, time.Now())
		rec, err := state.Create(ctx(t), task)
		if err == nil && i%10 == 0 {
			// Rewritten: the stream holds gaps where its first revision was.
			_, err = state.Transition(ctx(t), rec, models.StatusRunning, time.Now(), nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []jetstream.ListFilter{
		{Limit: 10, Newest: true, PageOnly: true},
		{Limit: 10, Newest: true, PageOnly: true, Function: "g"},
		{Limit: 10, Newest: true, PageOnly: true, SortBy: jetstream.SortUpdated},
		{Limit: 10, Newest: true, PageOnly: true, Statuses: []models.TaskStatus{models.StatusRunning}},
	} {
		all := f
		all.PageOnly, all.Limit = false, n
		whole, err := state.List(ctx(t), all)
		if err != nil || whole.Partial {
			t.Fatalf("List(%+v) = %v, partial %v", all, err, whole.Partial)
		}
		var want []string
		for _, r := range whole.Records {
			want = append(want, r.Task.ID)
		}
		var got []string
		for page := 0; page < 3; page++ {
			before := e.client.Conn().Stats().InMsgs
			p, err := state.List(ctx(t), f)
			read := e.client.Conn().Stats().InMsgs - before
			if err != nil {
				t.Fatal(err)
			}
			if !p.Partial || p.Next == "" || len(p.Records) != 10 || p.Stored == 0 || p.Read >= n/2 {
				t.Fatalf("List(%+v) page %d: %d records, partial %v, next %q, read %d of %d", f, page, len(p.Records), p.Partial, p.Next, p.Read, p.Stored)
			}
			// Window of 100 sequences, about one request each; at most a
			// few windows per page of the rewritten records' gaps.
			if limit := uint64(100 * (page + 4)); read > limit {
				t.Errorf("List(%+v) page %d received %d messages; want at most %d (the bucket holds %d)", f, page, read, limit, n)
			}
			for _, r := range p.Records {
				got = append(got, r.Task.ID)
			}
			f.After = p.Next
		}
		if !slices.Equal(got, want[:30]) {
			t.Errorf("List(%+v) pages: %v\nwant the whole list's first 30: %v", f, got, want[:30])
		}
	}
}

// A list newest first whose matches are old reads back to the start and
// counts them all; without PageOnly a list counts every match however
// its page ends.
func TestStateListNewestFirstCountsWhatItDidNotStopBefore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	state := e.client.State()
	state.SetScanBatch(50)
	state.SetListSkew(0)
	const n = 300
	for i := range n {
		task := models.NewTask(fmt.Sprintf("c%04d", i), "f", 3, 0, time.Now())
		if i < 3 {
			task.Function = "old"
		}
		if _, err := state.Create(ctx(t), task); err != nil {
			t.Fatal(err)
		}
	}
	p, err := state.List(ctx(t), jetstream.ListFilter{Limit: 10, Newest: true, PageOnly: true, Function: "old"})
	if err != nil || p.Partial || p.Total != 3 || len(p.Records) != 3 || p.Next != "" || p.Records[0].Task.ID != "c0002" || p.Read != n {
		t.Fatalf("List of the 3 oldest = %d records, total %d, partial %v, next %q, read %d, %v", len(p.Records), p.Total, p.Partial, p.Next, p.Read, err)
	}
	p, err = state.List(ctx(t), jetstream.ListFilter{Limit: 10, Newest: true, PageOnly: true})
	if err != nil || !p.Partial || p.Total >= n || p.Next == "" {
		t.Fatalf("List newest = total %d, partial %v, next %q, %v; want a partial count", p.Total, p.Partial, p.Next, err)
	}
	p, err = state.List(ctx(t), jetstream.ListFilter{Limit: 10, Newest: true})
	if err != nil || p.Partial || p.Total != n || p.Read != n || p.Records[0].Task.ID != fmt.Sprintf("c%04d", n-1) {
		t.Fatalf("List without PageOnly = total %d of %d, partial %v, read %d, %v", p.Total, n, p.Partial, p.Read, err)
	}
}

// pastPage: a list newest first stops when the page's worst record is
// later than any record not read can be.
func TestPastPage(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		worst time.Time
		skew  time.Duration
		want  bool
	}{
		{"later than the oldest message read", at.Add(time.Millisecond), 0, true},
		{"as late: a record not read may tie and sort first by id", at, 0, false},
		{"earlier", at.Add(-time.Second), 0, false},
		{"later, within the clocks' allowance", at.Add(5 * time.Second), 10 * time.Second, false},
		{"later than the allowance", at.Add(11 * time.Second), 10 * time.Second, true},
	} {
		if got := jetstream.PastPage(tt.worst.UnixNano(), at, tt.skew); got != tt.want {
			t.Errorf("%s: pastPage = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A list newest first that stops inside a window it read to the stream's
// start counts the rest of that window: it has read every record, and its
// total is every match (it was partial, total 6, read 50 of 50: "showing
// 5 of at least 6 (read the newest 50 of 50 records ...)").
func TestStateListNewestFirstThatReadItAllCountsItAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	state := e.client.State()
	state.SetListSkew(0)
	const n = 50
	for i := range n {
		if _, err := state.Create(ctx(t), models.NewTask(fmt.Sprintf("w%02d", i), "f", 3, 0, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	p, err := state.List(ctx(t), jetstream.ListFilter{Limit: 5, Newest: true, PageOnly: true})
	if err != nil || p.Partial || p.Total != n || p.Read != n || len(p.Records) != 5 || p.Records[0].Task.ID != "w49" || p.Next == "" {
		t.Fatalf("List of %d records, a page of 5 = %d records, total %d, partial %v, read %d, next %q, %v; want all counted", n, len(p.Records), p.Total, p.Partial, p.Read, p.Next, err)
	}
}
