package models_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/omniq/omniq/models"
)

// allowed is the state machine written out independently of the package's
// table, so a change to either shows up here.
var allowed = map[[2]models.TaskStatus]bool{
	{models.StatusPending, models.StatusRunning}:    true,
	{models.StatusPending, models.StatusFailed}:     true,
	{models.StatusPending, models.StatusCancelled}:  true,
	{models.StatusRunning, models.StatusRunning}:    true,
	{models.StatusRunning, models.StatusSucceeded}:  true,
	{models.StatusRunning, models.StatusFailed}:     true,
	{models.StatusRunning, models.StatusRetrying}:   true,
	{models.StatusRunning, models.StatusCancelled}:  true,
	{models.StatusRetrying, models.StatusRunning}:   true,
	{models.StatusRetrying, models.StatusFailed}:    true,
	{models.StatusRetrying, models.StatusCancelled}: true,
}

func TestCanTransitionEveryPair(t *testing.T) {
	t.Parallel()
	statuses := append([]models.TaskStatus{"", "bogus"}, models.AllStatuses...)
	for _, from := range statuses {
		for _, to := range statuses {
			want := allowed[[2]models.TaskStatus{from, to}]
			if got := models.CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%q, %q) = %v, want %v", from, to, got, want)
			}
			err := models.CheckTransition(from, to)
			if want && err != nil {
				t.Errorf("CheckTransition(%q, %q) = %v, want nil", from, to, err)
			}
			if !want && !errors.Is(err, models.ErrIllegalTransition) {
				t.Errorf("CheckTransition(%q, %q) = %v, want ErrIllegalTransition", from, to, err)
			}
		}
	}
}

func TestTerminalStatusesAcceptNothing(t *testing.T) {
	t.Parallel()
	for _, from := range models.AllStatuses {
		if !from.IsTerminal() {
			continue
		}
		for _, to := range models.AllStatuses {
			if models.CanTransition(from, to) {
				t.Errorf("terminal %s accepts %s", from, to)
			}
		}
	}
	var terminal []models.TaskStatus
	for _, s := range models.AllStatuses {
		if s.IsTerminal() {
			terminal = append(terminal, s)
		}
	}
	if fmt.Sprint(terminal) != "[succeeded failed cancelled]" {
		t.Fatalf("terminal statuses = %v", terminal)
	}
}

func TestParseTaskStatus(t *testing.T) {
	t.Parallel()
	for _, s := range models.AllStatuses {
		got, err := models.ParseTaskStatus(s.String())
		if err != nil || got != s {
			t.Errorf("ParseTaskStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, bad := range []string{"", "done", "PENDING", "running "} {
		_, err := models.ParseTaskStatus(bad)
		var fe *models.FieldError
		if !errors.As(err, &fe) || fe.Field != "status" || !errors.Is(err, models.ErrInvalidTask) {
			t.Errorf("ParseTaskStatus(%q) = %v, want status FieldError", bad, err)
		}
	}
}

func TestStatusNamesAreAllStatusesInOrder(t *testing.T) {
	names := models.StatusNames()
	if len(names) != len(models.AllStatuses) {
		t.Fatalf("StatusNames() = %v, want one per status of %v", names, models.AllStatuses)
	}
	for i, st := range models.AllStatuses {
		if names[i] != string(st) {
			t.Errorf("StatusNames()[%d] = %q, want %q", i, names[i], st)
		}
	}
}
