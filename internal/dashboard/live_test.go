package dashboard

import (
	"bufio"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
)

// subscribers returns how many event streams the hub feeds.
func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// A browser that goes away (tab closed, laptop asleep) ends its event
// stream on the server: the handler's goroutine and its hub subscription
// do not wait for the dashboard to stop.
func TestEventStreamEndsWhenTheBrowserGoesAway(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/") // a session
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events", nil)
		c := &http.Client{Jar: b.c.Jar, Transport: &http.Transport{}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(resp.Body)
		for { // the greeting: the stream is subscribed
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\n" {
				break
			}
		}
		if n := d.hub.subscribers(); n != 1 {
			t.Fatalf("stream %d: hub feeds %d streams, want 1", i, n)
		}
		cancel() // the browser goes away: its connection closes
		resp.Body.Close()
		c.CloseIdleConnections()
		omniqtest.Eventually(t, 10*time.Second, "the stream of a closed connection ends on the server", func() bool {
			return d.hub.subscribers() == 0
		})
	}
}
