package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
)

// A TaskError's message of several lines (a Python exception's, a
// handler's details) keeps its line breaks on the task's page: they were
// shown run together on one line.
func TestBrowserMultiLineErrorMessageKeepsItsLines(t *testing.T) {
	r := newRig(t)
	id := r.submit("fail", `{"message":"row 17 rejected\ncolumn price: not a number\ncolumn qty: missing"}`)
	omniqtest.WaitDead(t, r.srv.Client, id, 30*time.Second)
	r.signIn("/tasks/"+id, "replay")
	var shown string
	run(t, r.tab, "read the error's message as shown",
		chromedp.Evaluate(`document.querySelector(".err .msg").innerText`, &shown))
	if want := "row 17 rejected\ncolumn price: not a number\ncolumn qty: missing"; strings.TrimSpace(shown) != want {
		t.Errorf("the error's message shows as %q; want %q", shown, want)
	}
}
