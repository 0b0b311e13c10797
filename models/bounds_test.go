package models_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

func TestNewTaskErrorBoundsEveryField(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x", 900<<10)
	te, err := models.NewTaskError(models.TaskError{ErrorType: strings.Repeat("T", 1000), Message: "head " + huge + " tail",
		Traceback: huge, RetryCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(te.ErrorType) != models.MaxErrorTypeBytes || models.JSONSize(te.Message) > models.MaxMessageBytes || models.JSONSize(te.Traceback) > models.MaxTracebackBytes {
		t.Fatalf("sizes: type %d, message %d, traceback %d", len(te.ErrorType), len(te.Message), len(te.Traceback))
	}
	if !strings.HasPrefix(te.Message, "head ") || !strings.HasSuffix(te.Message, " tail") || !strings.Contains(te.Message, "bytes elided") {
		t.Fatalf("message lost its head, tail or the elision marker: %.80q...", te.Message)
	}
	// The worst case for JSON: every byte escaped to six.
	worst, err := models.NewTaskError(models.TaskError{ErrorType: strings.Repeat("<", 1000), Message: strings.Repeat("\x01", 1<<20),
		Traceback: strings.Repeat("\xff", 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(worst)
	if len(b) > models.MaxTaskErrorJSONBytes {
		t.Fatalf("worst-case TaskError encodes to %d bytes, over MaxTaskErrorJSONBytes %d", len(b), models.MaxTaskErrorJSONBytes)
	}
}

func TestTaskErrorValidateRefusesOversizeFields(t *testing.T) {
	t.Parallel()
	ok := models.TaskError{ErrorType: "panic", Message: "m", Timestamp: time.Now()}
	for field, mutate := range map[string]func(*models.TaskError){
		"error_type": func(e *models.TaskError) { e.ErrorType = strings.Repeat("t", models.MaxErrorTypeBytes+1) },
		"message":    func(e *models.TaskError) { e.Message = strings.Repeat("m", models.MaxMessageBytes+1) },
		"traceback":  func(e *models.TaskError) { e.Traceback = strings.Repeat("t", models.MaxTracebackBytes+1) },
	} {
		e := ok
		mutate(&e)
		var fe *models.FieldError
		if err := e.Validate(); !errors.As(err, &fe) || fe.Field != field || !strings.Contains(fe.Problem, "limit") {
			t.Errorf("%s over its bound: Validate() = %v", field, err)
		}
	}
}

func TestErrorHistoryIsBoundedByBytes(t *testing.T) {
	t.Parallel()
	task := models.NewTask("t1", "fail", 100, 0, time.Now())
	// Large, escaped errors: a few fill the byte budget long before the
	// count bound.
	msg := strings.Repeat("<", 1<<20)
	const n = 20
	for i := 0; i < n; i++ {
		task.RecordError(models.TaskError{ErrorType: "handler_error", Message: msg, Traceback: msg, Timestamp: time.Now(), RetryCount: i})
	}
	b, _ := json.Marshal(task.Errors)
	if len(b) > models.MaxErrorHistoryBytes {
		t.Fatalf("history encodes to %d bytes, over %d", len(b), models.MaxErrorHistoryBytes)
	}
	if len(task.Errors) == 0 || len(task.Errors)+task.ErrorsDropped != n || task.ErrorsDropped == 0 {
		t.Fatalf("kept %d, dropped %d, of %d", len(task.Errors), task.ErrorsDropped, n)
	}
	if last := task.Errors[len(task.Errors)-1]; last.RetryCount != n-1 || task.Error.RetryCount != n-1 {
		t.Fatalf("newest error not kept: %d", last.RetryCount)
	}
	rec, _ := json.Marshal(task)
	if len(rec) > models.MaxTaskRecordBytes {
		t.Fatalf("record encodes to %d bytes, over MaxTaskRecordBytes %d", len(rec), models.MaxTaskRecordBytes)
	}
}

func TestTransitionBoundsErrorsOfOlderRecords(t *testing.T) {
	t.Parallel()
	// A record written before the bounds: a 900 KiB message, ten times.
	big := models.TaskError{ErrorType: "handler_error", Message: strings.Repeat("m", 900<<10), Timestamp: time.Now()}
	task := models.NewTask("t1", "fail", 10, 0, time.Now())
	task.Status = models.StatusRetrying
	task.Error = &big
	for i := 0; i < 10; i++ {
		task.Errors = append(task.Errors, big)
	}
	if err := task.Validate(); err == nil {
		t.Fatal("oversize error validated")
	}
	if err := task.Transition(models.StatusRunning, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := task.Validate(); err != nil {
		t.Fatalf("after a transition: %v", err)
	}
	if rec, _ := json.Marshal(task); len(rec) > models.MaxTaskRecordBytes {
		t.Fatalf("record still %d bytes", len(rec))
	}
}

func TestJSONSizeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "quote\" back\\ nl\n cr\r tab\t", "\x00\x1f<>&", "\u2028\u2029", "\xff\xfe", "é日本", "a\xc3"} {
		b, _ := json.Marshal(s)
		if got := models.JSONSize(s); got != len(b)-2 {
			t.Errorf("JSONSize(%q) = %d, encoding/json writes %d", s, got, len(b)-2)
		}
	}
}

func TestPluginCrashesAreCountedAndReplayResetsTheCounters(t *testing.T) {
	t.Parallel()
	task := models.NewTask("t1", "crash", 3, 0, time.Now())
	if task.RunsAlone() {
		t.Fatal("a task that never saw its plugin crash runs alone")
	}
	task.RecordSharedCrash(models.TaskError{ErrorType: models.ErrorTypePluginCrash, Message: "exited beside others", Timestamp: time.Now()})
	if task.SharedCrashes != 1 || task.PluginCrashes != 0 || !task.RunsAlone() || len(task.Errors) != 1 || task.Error.Message != "exited beside others" {
		t.Fatalf("after a shared crash: shared %d, own %d, runs alone %v, errors %v; want 1, 0, true and the crash recorded",
			task.SharedCrashes, task.PluginCrashes, task.RunsAlone(), task.Errors)
	}
	task.RecordError(models.TaskError{ErrorType: models.ErrorTypePluginCrash, Message: "exited", Timestamp: time.Now()})
	task.RecordError(models.TaskError{ErrorType: models.ErrorTypeHandler, Message: "m", Timestamp: time.Now()})
	task.RecordError(models.TaskError{ErrorType: models.ErrorTypePluginCrash, Message: "exited", Timestamp: time.Now()})
	if task.PluginCrashes != 2 || task.SharedCrashes != 1 {
		t.Fatalf("PluginCrashes = %d, SharedCrashes = %d, want 2 and 1", task.PluginCrashes, task.SharedCrashes)
	}
	task.QuarantineWaits = 4
	task.Status = models.StatusFailed
	if err := task.Replay(time.Now()); err != nil {
		t.Fatal(err)
	}
	if task.PluginCrashes != 0 || task.SharedCrashes != 0 || task.QuarantineWaits != 0 || task.RunsAlone() {
		t.Fatalf("after replay: crashes %d, shared %d, quarantine waits %d", task.PluginCrashes, task.SharedCrashes, task.QuarantineWaits)
	}
}
