package models_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/omniq/omniq/models"
)

func ExampleNewTaskError() {
	te, err := models.NewTaskError(models.TaskError{
		ErrorType:   models.ErrorTypeTimeout,
		Message:     "deadline of 30s exceeded",
		Timestamp:   time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		RetryCount:  1,
		IsRetryable: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(te)
	// Output:
	// {
	//   "error_type": "timeout",
	//   "message": "deadline of 30s exceeded",
	//   "timestamp": "2026-11-25T10:00:00Z",
	//   "traceback": "",
	//   "retry_count": 1,
	//   "is_retryable": true
	// }
}

func ExampleNewTaskError_invalid() {
	_, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error"})
	var fe *models.FieldError
	if errors.As(err, &fe) {
		fmt.Println("bad field:", fe.Field)
	}
	fmt.Println(errors.Is(err, models.ErrInvalidTaskError))
	fmt.Println(err)
	// Output:
	// bad field: message
	// true
	// invalid task error: message is required
}

func ExampleCanTransition() {
	fmt.Println(models.CanTransition(models.StatusPending, models.StatusRunning))
	fmt.Println(models.CanTransition(models.StatusSucceeded, models.StatusRunning))
	fmt.Println(models.CheckTransition(models.StatusFailed, models.StatusPending))
	// Output:
	// true
	// false
	// illegal status transition: failed -> pending: failed is terminal
}

func ExampleTask_RecordError() {
	task := models.NewTask("order-42", "charge_card", 2, 0, time.Now())
	_ = task.Transition(models.StatusRunning, time.Now())
	task.RecordError(models.TaskError{ErrorType: "handler_error", Message: "card gateway 503", Timestamp: time.Now(), IsRetryable: true})
	_ = task.Transition(models.StatusRetrying, time.Now())
	fmt.Println(task.Status, task.Error.ErrorType, len(task.Errors), task.RetriesLeft())
	// Output: retrying handler_error 1 2
}

func ExampleValidateFunctionName() {
	fmt.Println(models.ValidateFunctionName("send_email"))
	fmt.Println(models.ValidateFunctionName("tasks.>"))
	// Output:
	// <nil>
	// invalid function name: function "tasks.>" has '.' at byte 5; only A-Z a-z 0-9 _ - are allowed
}
