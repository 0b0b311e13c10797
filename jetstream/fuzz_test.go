package jetstream_test

import (
	"errors"
	"net/textproto"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// fuzzHeader builds headers from lines of "Name: value".
func fuzzHeader(lines string) nats.Header {
	h := nats.Header{}
	for _, line := range strings.Split(lines, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h[k] = append(h[k], strings.TrimPrefix(v, " "))
		}
	}
	return h
}

// FuzzParseTaskMessage: whatever a client publishes, parsing never panics;
// a refused message wraps ErrInvalidMessage (or a models sentinel) and
// still has a valid id, so it can be dead-lettered; an accepted one is
// within every bound and survives Header and a second parse unchanged.
func FuzzParseTaskMessage(f *testing.F) {
	f.Add("omniq.tasks.echo", "", []byte("hello"), uint64(1))
	f.Add("omniq.tasks.echo", "Omniq-Task-Id: t1\nOmniq-Attempt: 3\nOmniq-Max-Retries: 5\nOmniq-Timeout: 30s\nX-Trace: abc", []byte("{}"), uint64(7))
	f.Add("omniq.tasks.echo", "Omniq-Attempt: 9223372036854775807", []byte{}, uint64(2))
	f.Add("omniq.tasks.echo", "Omniq-Attempt: 2147483648\nOmniq-Timeout: 9999999999h", []byte{}, uint64(2))
	f.Add("omniq.tasks.echo.extra", "Nats-Msg-Id: a..b", []byte("x"), uint64(3))
	f.Add("omniq.tasks.*", "Omniq-Task-Id: .bad", []byte("x"), uint64(4))
	f.Add("omniq.schedule.x", "x-lower: v\nX-Lower: w", []byte("x"), uint64(5))
	cfg := jetstream.Config{MaxPayload: 4096}.WithDefaults()
	f.Fuzz(func(t *testing.T, subject, headers string, data []byte, seq uint64) {
		hdr := fuzzHeader(headers)
		tm, err := cfg.ParseTaskMessage(subject, hdr, data, "OMNIQ_TASKS", seq)
		if verr := models.ValidateTaskID(tm.ID); verr != nil {
			t.Fatalf("id %q of the parsed message is invalid (%v); parse error: %v", tm.ID, verr, err)
		}
		if err != nil {
			if !errors.Is(err, jetstream.ErrInvalidMessage) {
				t.Fatalf("error does not wrap ErrInvalidMessage: %v", err)
			}
			return
		}
		switch {
		case models.ValidateFunctionName(tm.Function) != nil || cfg.TaskSubject(tm.Function) != subject:
			t.Fatalf("function %q from subject %q", tm.Function, subject)
		case tm.Attempt < 1:
			t.Fatalf("attempt %d", tm.Attempt)
		case tm.MaxRetries < 0 || !tm.HasMaxRetries && tm.MaxRetries != 0:
			t.Fatalf("max retries %d (set: %v)", tm.MaxRetries, tm.HasMaxRetries)
		case tm.Timeout < 0 || tm.Timeout > models.MaxTimeout:
			t.Fatalf("timeout %s", tm.Timeout)
		case len(tm.Payload) > cfg.MaxPayload:
			t.Fatalf("payload of %d bytes accepted", len(tm.Payload))
		}
		for k := range tm.Headers {
			if c := textproto.CanonicalMIMEHeaderKey(k); strings.HasPrefix(c, "Omniq-") || strings.HasPrefix(c, "Nats-") {
				t.Fatalf("reserved header %q passed to the handler", k)
			}
		}
		// What OmniQ republishes (a retry, on a retry subject) parses to
		// the same task, a derived id included.
		again, err := cfg.ParseTaskMessage(cfg.RetrySubject(tm.Function), tm.Header(), data, "OMNIQ_RETRIES", seq+1)
		if err != nil {
			t.Fatalf("own headers refused: %v", err)
		}
		if again.ID != tm.ID || again.Function != tm.Function || again.Attempt != tm.Attempt || again.MaxRetries != tm.MaxRetries ||
			again.HasMaxRetries != tm.HasMaxRetries || again.Timeout != tm.Timeout || len(again.Headers) > len(tm.Headers) {
			t.Fatalf("round trip changed the task:\n%+v\n%+v", tm, again)
		}
	})
}
