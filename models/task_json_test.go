package models

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// randomTask fills a task from r with the values records hold and the
// awkward ones: strings json escapes, zones, fractions near the format
// switch, empty and set optional fields.
func randomTask(r *rand.Rand) *Task {
	strs := []string{"", "echo", "task-0001", "a<b>&c", "quote\"back\\slash", "tab\tnl\n", "héllo", "\u2028", "\xff", "runner-1.host",
		"\b\f\r\x01\x1f\x7f", "x\u2029y", "a\xffb\xc3", "日本語", "Traceback (most recent call last):\n  File \"x.py\", line 1\n"}
	str := func() string { return strs[r.IntN(len(strs))] }
	zones := []*time.Location{time.UTC, time.FixedZone("plus", 5*3600+30*60), time.FixedZone("odd", 3600+17), time.FixedZone("far", 30*3600)}
	tm := func() time.Time {
		switch r.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.Date(10000+r.IntN(5), 1, 1, 0, 0, 0, 0, time.UTC)
		}
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9)*int64(r.IntN(2))).In(zones[r.IntN(len(zones))])
	}
	num := func() int { return []int{0, 1, 7, -3, 1 << 40}[r.IntN(5)] }
	t := &Task{
		SchemaVersion: num(), ID: str(), Function: str(), Status: TaskStatus(str()), Attempt: num(), RetryCount: num(),
		MaxRetries: num(), Interruptions: num(), Replays: num(), QuarantineWaits: num(), PluginCrashes: num(), SharedCrashes: num(),
		Timeout: Duration([]time.Duration{0, 1500 * time.Microsecond, 30 * time.Second, -time.Hour}[r.IntN(4)]),
		Runner:  str(), ClaimSequence: uint64(num() & math.MaxInt32), ClaimDelivery: uint64(r.IntN(3)), ClaimStream: str(),
		CreatedAt: tm(), RunAt: tm(), StartedAt: tm(), FinishedAt: tm(), UpdatedAt: tm(), ErrorsDropped: num(), QuarantinedUntil: tm(),
	}
	if r.IntN(2) == 0 {
		t.Progress = &Progress{Fraction: []float64{-1, 0, 0.5, 1, 1e-7, 1e21, 123456789.125, math.NaN()}[r.IntN(8)], Message: str(), UpdatedAt: tm()}
	}
	if r.IntN(2) == 0 {
		t.Result = []byte(str())
	}
	if r.IntN(4) == 0 {
		t.Error = &TaskError{ErrorType: str(), Message: str(), Timestamp: tm(), Traceback: str(), RetryCount: num(), IsRetryable: true}
		t.Errors = []TaskError{*t.Error}
	}
	return t
}

// AppendJSON writes exactly what encoding/json writes, or fails as it does.
func TestAppendJSONIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	encoded := 0
	for i := 0; i < 20000; i++ {
		task := randomTask(r)
		want, wantErr := json.Marshal((*taskJSON)(task))
		got, err := task.AppendJSON([]byte("prefix"))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("task %+v: err %v, encoding/json's %v", task, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("task %+v:\n got %s\nwant prefix%s", task, got, want)
		}
		if err == nil {
			encoded++
		}
	}
	if encoded < 1000 {
		t.Fatalf("only %d tasks could be encoded: the test does not test AppendJSON", encoded)
	}
}

// A record with errors, progress, a result and strings to escape takes the
// hand-written path (encoding/json allocates a dozen times for it).
func TestAppendJSONDoesNotFallBackForUsualRecords(t *testing.T) {
	now := time.Now()
	task := NewTask("01JD-task", "echo", 3, 30*time.Second, now)
	task.Status, task.StartedAt, task.Runner = StatusRetrying, now.UTC(), "runner-a"
	task.Progress = NewProgress(0.5, "half <done>", now)
	task.Result = []byte("hello")
	te := TaskError{ErrorType: "ValueError", Message: "bad \"input\"\n", Timestamp: now.UTC(), Traceback: "Traceback:\n\tline 1 \u2028", RetryCount: 1, IsRetryable: true}
	task.Error, task.Errors = &te, []TaskError{te, te}
	buf := make([]byte, 0, 4096)
	if allocs := testing.AllocsPerRun(100, func() { buf, _ = task.AppendJSON(buf[:0]) }); allocs > 0 {
		t.Fatalf("%v allocations per record: AppendJSON fell back to encoding/json", allocs)
	}
	want, _ := json.Marshal((*taskJSON)(task))
	if !bytes.Equal(buf, want) {
		t.Fatalf("got  %s\nwant %s", buf, want)
	}
}

// A record as the runner writes it on every task takes the fast path and
// decodes back to itself.
func TestAppendJSONRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 26, 3, 4, 5, 123456789, time.UTC)
	task := NewTask("01JD-task", "echo", 3, 30*time.Second, now)
	task.Status, task.StartedAt, task.Runner, task.ClaimSequence, task.ClaimDelivery, task.ClaimStream =
		StatusSucceeded, now, "runner-a", 42, 1, "OMNIQ_TASKS"
	task.Progress = NewProgress(1, "echoed", now)
	task.Result = []byte("hello")
	b, err := task.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var back Task
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := back.AppendJSON(nil)
	if !bytes.Equal(b, again) {
		t.Fatalf("round trip changed the record:\n%s\n%s", b, again)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(7), uint64(99))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		task := randomTask(rand.New(rand.NewPCG(a, b)))
		want, wantErr := json.Marshal((*taskJSON)(task))
		got, err := task.AppendJSON(nil)
		if (err != nil) != (wantErr != nil) || err == nil && !bytes.Equal(got, want) {
			t.Fatalf("task %+v:\n got %s %v\nwant %s %v", task, got, err, want, wantErr)
		}
	})
}

func BenchmarkTaskJSON(b *testing.B) {
	now := time.Now()
	task := NewTask("01JD-task", "echo", 3, 30*time.Second, now)
	task.Status, task.StartedAt, task.Runner, task.ClaimSequence = StatusSucceeded, now.UTC(), "runner-a", 42
	task.Progress = NewProgress(1, "echoed", now)
	task.Result = []byte("hello")
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal((*taskJSON)(task))
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf, _ = task.AppendJSON(buf[:0])
		}
	})
}

// TaskError.AppendJSON writes exactly what encoding/json writes for a
// TaskError, or fails as it does.
func TestTaskErrorAppendJSONIsEncodingJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		task := randomTask(r)
		if task.Error == nil {
			continue
		}
		e := task.Error
		e.IsRetryable = r.IntN(2) == 0
		want, wantErr := json.Marshal(e)
		got, err := e.AppendJSON([]byte("prefix"))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %+v: err %v, encoding/json's %v", e, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("error %+v:\n got %s\nwant prefix%s", e, got, want)
		}
	}
}
