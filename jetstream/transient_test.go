package jetstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func TestRetryTransientRetriesOnlyTransientErrors(t *testing.T) {
	unavailable := &natsjs.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	tests := []struct {
		name      string
		errs      []error // returned by successive tries; nil ends
		wantTries int
		wantErr   error
	}{
		{"success", []error{nil}, 1, nil},
		{"unavailable then success", []error{fmt.Errorf("get: %w", unavailable), nil}, 2, nil},
		{"timeout then success", []error{nats.ErrTimeout, nil}, 2, nil},
		{"no stream answered (leader change) then success", []error{fmt.Errorf("write state: %w", natsjs.ErrNoStreamResponse), nil}, 2, nil},
		{"permanent", []error{natsjs.ErrKeyNotFound}, 1, natsjs.ErrKeyNotFound},
		{"wrong sequence is not transient", []error{&natsjs.APIError{Code: 400, ErrorCode: natsjs.JSErrCodeStreamWrongLastSequence}}, 1, nil},
		{"gives up after five", []error{unavailable, unavailable, unavailable, unavailable, unavailable, nil}, 5, unavailable},
	}
	for _, tt := range tests {
		tries := 0
		err := retryTransient(context.Background(), func(context.Context) error {
			e := tt.errs[tries]
			tries++
			return e
		})
		if tries != tt.wantTries {
			t.Errorf("%s: %d tries, want %d", tt.name, tries, tt.wantTries)
		}
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		if tt.wantErr == nil && tt.name != "wrong sequence is not transient" && err != nil {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := retryTransient(ctx, func(context.Context) error { return unavailable })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, unavailable) {
		t.Fatalf("cancelled: err = %v", err)
	}
}

func TestRetryTransientRetriesATryThatGetsNoAnswer(t *testing.T) {
	// The first request vanished (sent as the connection dropped): it waits
	// until its try's deadline, and the second try is made and succeeds.
	tries := 0
	err := retryTransientEach(context.Background(), 50*time.Millisecond, func(ctx context.Context) error {
		tries++
		if tries == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Fatalf("err = %v after %d tries, want success after 2", err, tries)
	}
	// The caller's own deadline is not a try's: it ends the retries.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	tries = 0
	err = retryTransientEach(ctx, time.Second, func(ctx context.Context) error {
		tries++
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) || tries != 1 {
		t.Fatalf("err = %v after %d tries, want the caller's deadline after 1", err, tries)
	}
}
