package submitcmd

import (
	"bytes"
	"testing"
)

// writeJSONList writes what writeJSON writes for the same object, byte for
// byte: scripts that read list --json and dlq list --json see no change.
func TestWriteJSONListIsWriteJSONsOutput(t *testing.T) {
	type item struct {
		ID     string            `json:"id"`
		Nested map[string][]int  `json:"nested,omitempty"`
		Text   string            `json:"text,omitempty"`
		Hdr    map[string]string `json:"headers,omitempty"`
	}
	type tail struct {
		Total int    `json:"total"`
		Next  string `json:"next,omitempty"`
	}
	for _, tt := range []struct {
		name  string
		items []item
		tail  tail
	}{
		{"none", nil, tail{}},
		{"none, a next", []item{}, tail{0, "c"}},
		{"one", []item{{ID: "a"}}, tail{Total: 1}},
		{"several, nested, escapes", []item{
			{ID: "a", Nested: map[string][]int{"x": {1, 2}, "y": nil}},
			{ID: "b<&>", Text: "line\nline\u2028\u001b", Hdr: map[string]string{"K": "v"}},
			{ID: "c"},
		}, tail{Total: 9, Next: "created:desc:1/c"}},
	} {
		var want, got bytes.Buffer
		if err := writeJSON(&want, struct {
			Tasks []item `json:"tasks"`
			Total int    `json:"total"`
			Next  string `json:"next,omitempty"`
		}{append([]item{}, tt.items...), tt.tail.Total, tt.tail.Next}); err != nil {
			t.Fatal(err)
		}
		if err := writeJSONList(&got, "tasks", len(tt.items), func(i int) item { return tt.items[i] }, tt.tail); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%s: writeJSONList wrote\n%s\nwriteJSON\n%s", tt.name, got.String(), want.String())
		}
	}
}
