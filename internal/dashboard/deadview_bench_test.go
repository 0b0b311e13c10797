package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// BenchmarkDeadPageView measures one view of the dead-letter page with
// 3,000 entries of three functions, each with a 16 KiB traceback: the
// time per view, the messages omniq-ui sends NATS (requests, flow
// control) and the bytes it receives per view, with the stream unchanged
// since the last view and with an entry removed (replayed) since.
//
//	go test -run '^$' -bench DeadPageView -benchtime 20x ./internal/dashboard/
func BenchmarkDeadPageView(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom", Traceback: strings.Repeat("x", 16<<10)})
	if err != nil {
		b.Fatal(err)
	}
	const total = 3000
	for i := range total {
		fn := []string{"alpha", "beta", "gamma"}[i%3]
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%05d", i), Function: fn, Attempt: 1}, *te, 0); err != nil {
			b.Fatal(err)
		}
	}
	d := startDashboard(b, Config{Client: srv.Client})
	br := newBrowser(b, d.URL())
	view := func() {
		code, body := br.get("/dead")
		if code != http.StatusOK || !strings.Contains(body, `<td>gamma</td><td>handler_error</td><td class="n">1000</td>`) {
			b.Fatalf("dead: %d, without the group of 1000 gamma entries:\n%s", code, body)
		}
	}
	view() // the session's first page, and the dashboard's first read
	nc := srv.Client.Conn()
	measure := func(b *testing.B, before func(i int)) {
		out, in := nc.Stats().OutMsgs, nc.Stats().InBytes
		b.ResetTimer()
		for i := range b.N {
			if before != nil {
				b.StopTimer()
				before(i)
				b.StartTimer()
			}
			view()
		}
		b.StopTimer()
		b.ReportMetric(float64(nc.Stats().OutMsgs-out)/float64(b.N), "natsmsgs/view")
		b.ReportMetric(float64(nc.Stats().InBytes-in)/float64(b.N)/(1<<10), "KiBin/view")
	}
	b.Run("unchanged", func(b *testing.B) { measure(b, nil) })
	// An entry removed from the middle of the stream before each view (a
	// replay): the view asks for the removed sequences too.
	b.Run("after a removal", func(b *testing.B) {
		measure(b, func(i int) {
			if err := srv.Client.RemoveReplayedDead(ctx, "alpha", fmt.Sprintf("entry-%05d", 1500+3*(i%500))); err != nil {
				b.Fatal(err)
			}
		})
	})
}
