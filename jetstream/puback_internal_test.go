package jetstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// parsePubAck reads what nats-server answers to a publish.
func TestParsePubAck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    string
		seq     uint64
		dup     bool
		errCode natsjs.ErrorCode // 0: no API error
		invalid bool
	}{
		{"stored", `{"stream":"KV_OMNIQ_STATE","seq":42}`, 42, false, 0, false},
		{"with domain", `{"stream":"KV_OMNIQ_STATE","domain":"hub","seq":7}`, 7, false, 0, false},
		{"duplicate", `{"stream":"S","seq":9,"duplicate":true}`, 9, true, 0, false},
		{"duplicate as nats-server writes it", `{"stream":"S","seq":9,"duplicate": true}`, 9, true, 0, false},
		{"not a duplicate", `{"stream":"S","seq":9,"duplicate":false}`, 9, false, 0, false},
		{"spaces", `{"stream": "S", "seq": 12}`, 12, false, 0, false},
		{"wrong last sequence", `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"KV_OMNIQ_STATE","seq":0}`, 0, false, natsjs.JSErrCodeStreamWrongLastSequence, false},
		{"a write of the subject in process", `{"error":{"code":400,"err_code":10164,"description":"wrong last sequence"},"stream":"KV_OMNIQ_STATE","seq":0}`, 0, false, natsjs.JSErrCodeStreamWrongLastSequenceConstant, false},
		{"unavailable", `{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`, 0, false, 10008, false},
		{"a stream named seq", `{"stream":"\"seq\":1","error":{"code":400,"err_code":10071,"description":"x"}}`, 0, false, natsjs.JSErrCodeStreamWrongLastSequence, false},
		{"no sequence", `{"stream":"S"}`, 0, false, 0, true},
		{"not JSON", `-ERR 'oops'`, 0, false, 0, true},
		{"empty", ``, 0, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack, err := parsePubAck([]byte(tc.data))
			var apiErr *natsjs.APIError
			switch {
			case tc.invalid:
				if !errors.Is(err, natsjs.ErrInvalidJSAck) {
					t.Fatalf("err = %v, want ErrInvalidJSAck", err)
				}
			case tc.errCode != 0:
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.errCode {
					t.Fatalf("err = %v, want API error %d", err, tc.errCode)
				}
			case err != nil || ack.Seq != tc.seq || ack.Duplicate != tc.dup:
				t.Fatalf("= %+v, %v; want seq %d duplicate %v", ack, err, tc.seq, tc.dup)
			}
		})
	}
}

// A duplicate answer means the id was taken only on the first try: on a
// retry it is the first try's own message, stored though its answer was
// lost (the task is submitted, not refused).
func TestTakenBefore(t *testing.T) {
	for _, tc := range []struct {
		ack   pubAck
		tries int
		want  bool
	}{
		{pubAck{Seq: 1}, 1, false},
		{pubAck{Seq: 1, Duplicate: true}, 1, true},
		{pubAck{Seq: 1, Duplicate: true}, 2, false},
		{pubAck{Seq: 1}, 3, false},
	} {
		if got := takenBefore(tc.ack, tc.tries); got != tc.want {
			t.Errorf("takenBefore(%+v, %d) = %v, want %v", tc.ack, tc.tries, got, tc.want)
		}
	}
}

// pastDeadline is a context whose deadline has passed while its timer has
// not yet fired: Done is open and Err is nil, as a context.WithTimeout's
// are for a moment after its deadline.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (pastDeadline) Done() <-chan struct{}       { return nil }
func (pastDeadline) Err() error                  { return nil }

// A write whose context's deadline has passed fails, and is not sent: it
// was reported done, unsent, while the context's timer had not fired.
func TestAWriteAtAPassedDeadlineFailsUnsent(t *testing.T) {
	ran := false
	err := retryTransientTimed(pastDeadline{context.Background()}, func(time.Duration) error { ran = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("err = %v, op ran = %v; want context.DeadlineExceeded and op not run", err, ran)
	}
}

// A publish that no stream acknowledged in time (a store that cannot
// write stays silent; so does a stream without a leader) says where to
// look and that submitting again is safe, not only "nats: timeout".
func TestPublishErrorOfASilentStreamSaysWhereToLook(t *testing.T) {
	for _, cause := range []error{nats.ErrTimeout, context.DeadlineExceeded} {
		err := publishError("t1", cause)
		if !errors.Is(err, cause) {
			t.Errorf("%v: %v does not wrap it", cause, err)
		}
		for _, want := range []string{"publish task t1", "no acknowledgement from the stream", "cannot write its store", "same id is safe"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: %q does not say %q", cause, err, want)
			}
		}
	}
	if err := publishError("t1", errors.New("other")); err.Error() != "publish task t1: other" {
		t.Errorf("another error: %q", err)
	}
}

// A state write that got no answer names where to look, as a submit does;
// it said only "nats: timeout".
func TestStateWriteErrorOfASilentStreamSaysWhereToLook(t *testing.T) {
	for _, cause := range []error{nats.ErrTimeout, context.DeadlineExceeded} {
		err := stateWriteError("t1", cause)
		if !errors.Is(err, cause) {
			t.Errorf("%v: %v does not wrap it", cause, err)
		}
		for _, want := range []string{"write state of task t1", "no acknowledgement from the state bucket's stream", "cannot write its store"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: %q does not say %q", cause, err, want)
			}
		}
	}
	if err := stateWriteError("t1", errors.New("other")); err.Error() != "write state of task t1: other" {
		t.Errorf("another error: %q", err)
	}
}

// A refusal because a write of the key is in process is asked again until
// another answer comes, within the time given; other answers end it.
func TestAskWhileSubjectInProcess(t *testing.T) {
	inProcess := &natsjs.APIError{Code: 400, ErrorCode: natsjs.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}
	stale := &natsjs.APIError{Code: 400, ErrorCode: natsjs.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence: 7"}
	for _, tc := range []struct {
		name    string
		answers []error // what each ask answers, in turn; the last one is repeated
		within  time.Duration
		want    error
		asks    int
	}{
		{"stored once the other write is", []error{inProcess, inProcess, nil}, time.Second, nil, 3},
		{"stale once the other write is", []error{inProcess, stale}, time.Second, stale, 2},
		{"no answer", []error{nats.ErrTimeout}, time.Second, nats.ErrTimeout, 1},
		{"in process past the time given", []error{inProcess}, 30 * time.Millisecond, inProcess, -1},
		{"no time to ask again", []error{nil}, 0, inProcess, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asks := 0
			err := askWhileSubjectInProcess(context.Background(), inProcess, time.Now().Add(tc.within), func() error {
				asks++
				return tc.answers[min(asks, len(tc.answers))-1]
			})
			if !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.asks >= 0 && asks != tc.asks {
				t.Fatalf("asked %d times, want %d", asks, tc.asks)
			}
			if tc.asks < 0 && asks < 2 {
				t.Fatalf("asked %d times in %v, want it asked again while in process", asks, tc.within)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := askWhileSubjectInProcess(ctx, inProcess, time.Now().Add(time.Minute), func() error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("with its context ended: %v", err)
	}
}
