package models_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/omniq/omniq/models"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func validTask() *models.Task {
	return models.NewTask("task-1", "resize", 3, 30*time.Second, t0)
}

func TestTaskValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(*models.Task)
		wantField string
		wantKind  error
	}{
		{"valid", func(*models.Task) {}, "", nil},
		{"bad id", func(k *models.Task) { k.ID = "a b" }, "id", models.ErrInvalidTaskID},
		{"bad function", func(k *models.Task) { k.Function = "a.b" }, "function", models.ErrInvalidFunctionName},
		{"bad status", func(k *models.Task) { k.Status = "done" }, "status", models.ErrInvalidTask},
		{"negative attempt", func(k *models.Task) { k.Attempt = -1 }, "attempt", models.ErrInvalidTask},
		{"negative retry_count", func(k *models.Task) { k.RetryCount = -1 }, "retry_count", models.ErrInvalidTask},
		{"negative max_retries", func(k *models.Task) { k.MaxRetries = -1 }, "max_retries", models.ErrInvalidTask},
		{"negative interruptions", func(k *models.Task) { k.Interruptions = -1 }, "interruptions", models.ErrInvalidTask},
		{"negative timeout", func(k *models.Task) { k.Timeout = -1 }, "timeout", models.ErrInvalidTask},
		{"zero created_at", func(k *models.Task) { k.CreatedAt = time.Time{} }, "created_at", models.ErrInvalidTask},
		{"bad error", func(k *models.Task) { k.Error = &models.TaskError{Message: "x", Timestamp: t0} }, "error_type", models.ErrInvalidTaskError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			task := validTask()
			tt.mutate(task)
			err := task.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *models.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !errors.Is(err, tt.wantKind) {
				t.Fatalf("Validate() = %v, want FieldError %q wrapping %v", err, tt.wantField, tt.wantKind)
			}
		})
	}
}

func TestTaskTransitionStamps(t *testing.T) {
	t.Parallel()
	task := validTask()
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	task.Runner, task.ClaimSequence, task.ClaimDelivery = "runner-a", 7, 1
	if err := task.Transition(models.StatusRunning, t1); err != nil {
		t.Fatal(err)
	}
	if task.Status != models.StatusRunning || !task.StartedAt.Equal(t1) || !task.UpdatedAt.Equal(t1) || !task.FinishedAt.IsZero() {
		t.Fatalf("after running: %+v", task)
	}
	if err := task.Transition(models.StatusSucceeded, t2); err != nil {
		t.Fatal(err)
	}
	if !task.FinishedAt.Equal(t2) || !task.StartedAt.Equal(t1) || task.Runner != "" || task.ClaimSequence != 0 || task.ClaimDelivery != 0 {
		t.Fatalf("after succeeded: %+v", task)
	}
	before := *task
	err := task.Transition(models.StatusRunning, t2.Add(time.Second))
	if !errors.Is(err, models.ErrIllegalTransition) || !strings.Contains(err.Error(), "succeeded is terminal") {
		t.Fatalf("Transition out of succeeded = %v, want ErrIllegalTransition naming the terminal status", err)
	}
	if task.Status != before.Status || !task.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("a refused transition changed the task: %+v", task)
	}
}

// Runner names the runner holding the claim only while the task runs: a
// retry waiting for its delay is held by no runner (the retrying record
// kept the failed attempt's runner), nor is an ended task.
func TestTransitionOutOfRunningReleasesTheRunner(t *testing.T) {
	t.Parallel()
	for _, to := range []models.TaskStatus{models.StatusRetrying, models.StatusSucceeded, models.StatusFailed, models.StatusCancelled} {
		task := validTask()
		mustTransition(t, task, models.StatusRunning)
		task.Runner = "runner-a"
		mustTransition(t, task, to)
		if task.Runner != "" {
			t.Errorf("after running -> %s: Runner = %q, want none", to, task.Runner)
		}
	}
}

// A task's wait for its plugin's quarantine ends with the wait: the next
// transition (its claim, a cancellation) clears QuarantinedUntil.
func TestTransitionEndsAQuarantineWait(t *testing.T) {
	t.Parallel()
	for _, to := range []models.TaskStatus{models.StatusRunning, models.StatusCancelled} {
		task := validTask()
		mustTransition(t, task, models.StatusRunning)
		mustTransition(t, task, models.StatusRetrying)
		task.QuarantinedUntil = t0.Add(time.Minute)
		if !task.WaitsForQuarantine() {
			t.Fatalf("a retrying task with QuarantinedUntil set does not wait for the quarantine")
		}
		mustTransition(t, task, to)
		if !task.QuarantinedUntil.IsZero() || task.WaitsForQuarantine() {
			t.Errorf("after %s: QuarantinedUntil = %v, want it cleared", to, task.QuarantinedUntil)
		}
	}
}

func TestRecordErrorBoundsHistory(t *testing.T) {
	t.Parallel()
	task := validTask()
	n := models.MaxErrorHistory + 5
	for i := 0; i < n; i++ {
		task.RecordError(models.TaskError{ErrorType: "handler_error", Message: string(rune('a' + i%26)), Timestamp: t0, RetryCount: i})
	}
	if len(task.Errors) != models.MaxErrorHistory {
		t.Fatalf("len(Errors) = %d, want %d", len(task.Errors), models.MaxErrorHistory)
	}
	if task.ErrorsDropped != 5 {
		t.Fatalf("ErrorsDropped = %d, want 5", task.ErrorsDropped)
	}
	if task.Errors[0].RetryCount != 5 || task.Errors[len(task.Errors)-1].RetryCount != n-1 {
		t.Fatalf("history is not the newest %d oldest first: first=%d last=%d", models.MaxErrorHistory, task.Errors[0].RetryCount, task.Errors[len(task.Errors)-1].RetryCount)
	}
	if task.Error == nil || task.Error.RetryCount != n-1 {
		t.Fatalf("Error = %+v, want the latest", task.Error)
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	task := validTask()
	mustTransition(t, task, models.StatusRunning)
	task.RetryCount, task.Interruptions = 3, 1
	task.RecordError(models.TaskError{ErrorType: "timeout", Message: "deadline", Timestamp: t0})
	mustTransition(t, task, models.StatusFailed)
	task.Runner, task.ClaimSequence, task.ClaimDelivery = "left-behind", 9, 3 // as an old record might hold

	if err := task.Replay(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if task.Status != models.StatusPending || task.RetryCount != 0 || task.Interruptions != 0 || task.Replays != 1 ||
		task.Error != nil || len(task.Errors) != 1 || !task.FinishedAt.IsZero() || task.RetriesLeft() != 3 ||
		task.Runner != "" || task.ClaimSequence != 0 || task.ClaimDelivery != 0 {
		t.Fatalf("after replay: %+v", task)
	}
	if err := task.Replay(t0); !errors.Is(err, models.ErrIllegalTransition) {
		t.Fatalf("Replay of a pending task = %v, want ErrIllegalTransition", err)
	}
}

func mustTransition(t *testing.T, task *models.Task, to models.TaskStatus) {
	t.Helper()
	if err := task.Transition(to, t0); err != nil {
		t.Fatal(err)
	}
}

func TestRetriesLeft(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ max, used, want int }{{3, 0, 3}, {3, 2, 1}, {3, 3, 0}, {3, 5, 0}, {0, 0, 0}} {
		task := validTask()
		task.MaxRetries, task.RetryCount = tt.max, tt.used
		if got := task.RetriesLeft(); got != tt.want {
			t.Errorf("max=%d used=%d: RetriesLeft() = %d, want %d", tt.max, tt.used, got, tt.want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{{`"30s"`, 30 * time.Second}, {`"1m30s"`, 90 * time.Second}, {`1500000000`, 1500 * time.Millisecond}} {
		var d models.Duration
		if err := json.Unmarshal([]byte(tt.in), &d); err != nil || time.Duration(d) != tt.want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", tt.in, time.Duration(d), err, tt.want)
		}
	}
	for _, bad := range []string{`"soon"`, `true`, `{}`} {
		var d models.Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) accepted it as %v", bad, d)
		}
	}
	b, _ := json.Marshal(models.Duration(90 * time.Second))
	if string(b) != `"1m30s"` {
		t.Errorf("Marshal = %s", b)
	}
}

// goldenTask is a task with every field set, so the golden file pins all of
// the wire format.
func goldenTask() *models.Task {
	task := models.NewTask("0f8c2a1e-7b1d-4f5e-9a36-2d9c6a1e7b00", "resize", 3, 90*time.Second, t0)
	task.Status = models.StatusFailed
	task.Attempt, task.RetryCount, task.Interruptions, task.Replays = 4, 3, 1, 1
	task.Runner = ""
	task.RunAt = t0.Add(30 * time.Second)
	task.StartedAt = t0.Add(time.Minute)
	task.FinishedAt = t0.Add(2 * time.Minute)
	task.UpdatedAt = task.FinishedAt
	task.Result = []byte("partial")
	first := models.TaskError{ErrorType: "panic", Message: "runtime error: index out of range [3] with length 3", Timestamp: t0.Add(10 * time.Second), Traceback: "goroutine 7 [running]:\nmain.resize(...)\n\t/src/resize.go:42", RetryCount: 0, IsRetryable: true}
	last := models.TaskError{ErrorType: "ValidationError", Message: "width must be positive", Timestamp: t0.Add(2 * time.Minute), RetryCount: 3, IsRetryable: false}
	task.RecordError(first)
	task.RecordError(last)
	task.ErrorsDropped = 2
	return task
}

func TestGoldenWireFormat(t *testing.T) {
	t.Parallel()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "plugin_crash", Message: "plugin exited: signal: killed (out of memory)", Timestamp: t0, Traceback: "fatal error: runtime: out of memory", RetryCount: 1, IsRetryable: true})
	if err != nil {
		t.Fatal(err)
	}
	pending := models.NewTask("task-1", "send_email", 0, 0, t0)
	running := models.NewTask("task-2", "send_email", 2, 0, t0)
	mustTransition(t, running, models.StatusRunning)
	running.Attempt, running.Runner, running.ClaimSequence, running.ClaimDelivery = 1, "runner-a", 42, 2
	for name, v := range map[string]any{
		"taskerror.golden.json":    te,
		"task.golden.json":         goldenTask(),
		"task_pending.golden.json": pending,
		"task_running.golden.json": running,
	} {
		got, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./models -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the wire format changed.\ngot:\n%s\nwant:\n%s\nIf the change is deliberate, bump SchemaVersion if old readers break, and run go test ./models -update.", name, got, want)
		}
	}
}

func TestGoldenRoundTrip(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "task.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got models.Task
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(&got, "", "  ")
	if !bytes.Equal(append(again, '\n'), b) {
		t.Fatalf("decode+encode of the golden task changed it:\n%s", again)
	}
	if got.Error == nil || got.Error.ErrorType != "ValidationError" || len(got.Errors) != 2 || got.Errors[0].ErrorType != "panic" {
		t.Fatalf("decoded errors wrong: %+v", got)
	}
}

func TestDecodeOlderAndNewerRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file  string
		check func(t *testing.T, task *models.Task)
	}{
		{"task_v0_no_error_fields.json", func(t *testing.T, task *models.Task) {
			if task.SchemaVersion != 0 || task.Error != nil || task.Errors != nil || task.Status != models.StatusSucceeded {
				t.Fatalf("v0 record decoded as %+v", task)
			}
			if string(task.Result) != "done" {
				t.Fatalf("result = %q", task.Result)
			}
		}},
		{"task_future_unknown_fields.json", func(t *testing.T, task *models.Task) {
			if task.SchemaVersion != 9 || task.Error == nil || task.Error.ErrorType != "timeout" || len(task.Errors) != 1 {
				t.Fatalf("future record decoded as %+v", task)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var task models.Task
			if err := json.Unmarshal(b, &task); err != nil {
				t.Fatalf("decode %s: %v", tt.file, err)
			}
			if err := task.Validate(); err != nil {
				t.Fatalf("decoded %s does not validate: %v", tt.file, err)
			}
			tt.check(t, &task)
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	t.Parallel()
	orig := goldenTask()
	c := orig.Clone()
	c.Result[0] = 'X'
	c.Error.Message = "changed"
	c.Errors[0].Message = "changed"
	c.Errors = append(c.Errors, models.TaskError{})
	if orig.Result[0] == 'X' || orig.Error.Message == "changed" || orig.Errors[0].Message == "changed" || len(orig.Errors) != 2 {
		t.Fatalf("changing the clone changed the original: %+v", orig)
	}
}

func TestFailedTaskKeepsItsClaim(t *testing.T) {
	t.Parallel()
	task := validTask()
	task.Status, task.Runner, task.ClaimStream, task.ClaimSequence, task.ClaimDelivery = models.StatusRunning, "r", "S", 7, 2
	if err := task.Transition(models.StatusFailed, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// A later delivery of the claimed message must still be recognised, to
	// write a dead-letter entry its runner may not have written.
	if task.ClaimStream != "S" || task.ClaimSequence != 7 || task.ClaimDelivery != 2 || task.Runner != "" {
		t.Fatalf("after failed: %+v", task)
	}
	if err := task.Replay(t0.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if task.ClaimStream != "" || task.ClaimSequence != 0 || task.ClaimDelivery != 0 {
		t.Fatalf("after replay: %+v", task)
	}
}

func TestNewProgressBounds(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", models.MaxProgressMessageBytes) // 2 bytes a rune
	nan := 0.0
	nan /= nan
	tests := []struct {
		fraction float64
		message  string
		want     float64
		wantLen  int
	}{
		{0.5, "half", 0.5, 4},
		{-3, "", -1, 0},
		{nan, "", -1, 0},
		{7, "", 1, 0},
		{1, long, 1, models.MaxProgressMessageBytes},
	}
	for _, tt := range tests {
		p := models.NewProgress(tt.fraction, tt.message, t0)
		if p.Fraction != tt.want || len(p.Message) != tt.wantLen || !utf8.ValidString(p.Message) || !p.UpdatedAt.Equal(t0) {
			t.Errorf("NewProgress(%v, %d bytes) = %v, %d bytes (valid %v)", tt.fraction, len(tt.message), p.Fraction, len(p.Message), utf8.ValidString(p.Message))
		}
	}
}

// AttemptsRun leaves out the attempts a quarantine of the task's plugin put
// back unrun.
func TestTaskAttemptsRun(t *testing.T) {
	for _, tt := range []struct {
		attempt, waits, want int
	}{
		{0, 0, 0},
		{1, 0, 1},
		{3, 0, 3},
		{1, 1, 0}, // the only attempt was put back
		{3, 1, 2},
		{2, 5, 0}, // never negative, whatever a record says
	} {
		task := &models.Task{Attempt: tt.attempt, QuarantineWaits: tt.waits}
		if got := task.AttemptsRun(); got != tt.want {
			t.Errorf("Attempt %d, QuarantineWaits %d: AttemptsRun() = %d, want %d", tt.attempt, tt.waits, got, tt.want)
		}
	}
}
