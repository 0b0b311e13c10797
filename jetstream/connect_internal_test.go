package jetstream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// A subscription a client floods turns slow consumer again and again; each
// time is one asynchronous error. They are logged once per subject and
// error per interval, the next line counting the repeats, and all of them
// reach onError.
func TestAsyncErrorsAreLoggedOncePerInterval(t *testing.T) {
	var out strings.Builder
	log := logrus.New()
	log.Out = &out
	now := time.Unix(1000, 0)
	calls := 0
	h := newAsyncErrorHandler(log, func(error) { calls++ }, 10*time.Second, func() time.Time { return now })
	cancels := &nats.Subscription{Subject: "omniq.cancel.>"}
	admin := &nats.Subscription{Subject: "omniq.admin.>"}
	for i := 0; i < 1000; i++ {
		h(nil, cancels, nats.ErrSlowConsumer)
	}
	h(nil, admin, nats.ErrSlowConsumer)
	h(nil, cancels, errors.New("nats: permissions violation: Permissions Violation for Publish to \"x\""))
	if n := strings.Count(out.String(), "NATS asynchronous error"); n != 3 {
		t.Fatalf("%d lines for 1,000 slow-consumer errors on one subject, one on another and one other error; want 3:\n%s", n, out.String())
	}
	now = now.Add(10 * time.Second)
	h(nil, cancels, nats.ErrSlowConsumer)
	if !strings.Contains(out.String(), "repeated=999") {
		t.Fatalf("the line after the interval does not count the 999 repeats:\n%s", out.String())
	}
	if calls != 1003 {
		t.Fatalf("onError called %d times, want 1003", calls)
	}
}
