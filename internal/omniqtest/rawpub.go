package omniqtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// PublishRaw publishes n copies of body on subject to the server at
// clientURL, with the header block hdr exactly as given (from its
// "NATS/1.0" line to its closing blank line), by writing the NATS
// protocol itself: nats.go cannot send some blocks a hostile client can
// (a blank line among the headers, a status line of its choosing). It
// waits for each JetStream acknowledgement and returns the highest stream
// sequence; a refused or unanswered publish fails the test. The server
// must let an anonymous client publish there.
func PublishRaw(t testing.TB, clientURL, subject, hdr string, body []byte, n int) uint64 {
	t.Helper()
	u, err := url.Parse(clientURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	const inbox = "_INBOX.raw"
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\nSUB %s 1\r\n", inbox)
	for range n {
		fmt.Fprintf(w, "HPUB %s %s %d %d\r\n%s%s\r\n", subject, inbox, len(hdr), len(hdr)+len(body), hdr, body)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for acked := 0; acked < n; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%d of %d raw publishes on %s acknowledged: %v", acked, n, subject, err)
		}
		switch {
		case strings.HasPrefix(line, "-ERR"):
			t.Fatalf("raw publish on %s: %s", subject, line)
		case strings.HasPrefix(line, "PING"):
			fmt.Fprint(c, "PONG\r\n")
		case strings.HasPrefix(line, "MSG "+inbox):
			ack, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%d of %d raw publishes on %s acknowledged: %v", acked, n, subject, err)
			}
			var pa struct {
				Seq   uint64          `json:"seq"`
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal([]byte(ack), &pa); err != nil || pa.Error != nil || pa.Seq == 0 {
				t.Fatalf("raw publish on %s refused: %s (%v)", subject, ack, err)
			}
			acked++
			last = max(last, pa.Seq)
		}
	}
	return last
}
