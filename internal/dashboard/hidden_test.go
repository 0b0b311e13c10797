package dashboard

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner/pluginhost"
)

// hiddenType and hiddenMessage are an error a handler (faults' fail,
// from its payload) could return with characters that print nothing in a
// browser but change what the text around them reads as: U+202E shows
// "gnp.exe" as "exe.png" (and turns the rest of a heading around), a
// zero-width space and a tag character hide in a name, ESC is invisible.
const (
	hiddenType    = "handler_error\u202e  \u200b"
	hiddenMessage = "safe to replay\u202egnp.exe\x1b[8m \U000E0041"
)

// rawHidden says whether body holds one of those characters as itself.
func rawHidden(body string) bool {
	return strings.ContainsAny(body, "\u202e\u200b\x1b\U000E0041")
}

// The pages show the characters of what submitters and plugins wrote that
// print nothing as escapes, as omniq-submit does, where they are text;
// where a form carries the value (the error type of a bulk action, the
// tasks filter) it stays exact.
func TestPagesShowHiddenCharactersAsEscapes(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	payload, err := json.Marshal(map[string]any{"type": hiddenType, "message": hiddenMessage, "permanent": true})
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	res, err := srv.Client.Submit(omniqtest.Context(t), jetstream.SubmitRequest{Function: "fail", Payload: payload, MaxRetries: &zero,
		Headers: map[string]string{"X-Note": "a\u202eb"}})
	if err != nil {
		t.Fatal(err)
	}
	// The pages are given the characters themselves: the dead letter
	// holds the handler's error exact.
	if dt := omniqtest.WaitDead(t, srv.Client, res.ID, 30*time.Second); dt.Error.ErrorType != hiddenType || dt.Error.Message != hiddenMessage {
		t.Fatalf("dead letter's error %q: %q, want the handler's %q: %q", dt.Error.ErrorType, dt.Error.Message, hiddenType, hiddenMessage)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	for _, page := range []string{"/tasks/" + res.ID, "/dead", "/tasks?status=failed"} {
		code, body := b.get(page)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", page, code)
		}
		text := body
		// The exact type stays in form values and links, escaped as
		// HTML or a URL: drop those to look at the text.
		text = strings.ReplaceAll(text, html.EscapeString(hiddenType), "")
		if rawHidden(text) {
			t.Errorf("%s shows hidden characters raw:\n%s", page, body)
		}
		if !strings.Contains(body, `handler_error<span class="cc">\u202e</span>  <span class="cc">\u200b</span>`) {
			t.Errorf("%s does not show the error type's hidden characters as escapes:\n%s", page, body)
		}
	}
	for _, page := range []string{"/", "/runners", "/tasks"} {
		if _, body := b.get(page); rawHidden(strings.ReplaceAll(body, html.EscapeString(hiddenType), "")) {
			t.Errorf("%s shows hidden characters raw:\n%s", page, body)
		}
	}
	_, body := b.get("/tasks/" + res.ID)
	for _, want := range []string{`safe to replay<span class="cc">\u202e</span>gnp.exe<span class="cc">\u001b</span>[8m <span class="cc">\udb40\udc41</span>`,
		`<td>a<span class="cc">\u202e</span>b</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the task page does not hold %q:\n%s", want, body)
		}
	}
	// The tasks filter offers the type by its exact value: an option
	// without one submits its text, whitespace collapsed.
	_, body = b.get("/tasks")
	if !strings.Contains(body, `<option value="`+html.EscapeString(hiddenType)+`"`) {
		t.Errorf("the error type filter does not offer the exact type:\n%s", body)
	}
	// The question before a purge names the type with its escapes, and
	// its form carries the type exact.
	code, body := b.post("/dead/purge", url.Values{"csrf": {b.csrf("/dead")}, "function": {"fail"}, "error_type": {hiddenType}})
	if code != http.StatusOK || !strings.Contains(body, `<span class="cc">\u202e</span>`) ||
		!strings.Contains(body, `name="error_type" value="`+html.EscapeString(hiddenType)+`"`) {
		t.Errorf("purge's question (%d):\n%s", code, body)
	}
}
