// Package stacks renders the stacks of a handler's goroutines, found by
// their pprof label, for the traceback of a timeout: what the Go SDK sends
// at an attempt's deadline and what sdktest.Run reports for a handler
// still running past it.
package stacks

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strings"
)

// Of returns the stacks of the goroutines whose pprof label key is
// value, as a Go traceback would print them (function, then file:line),
// each cut where the SDK's own frames begin: what the handler was doing.
func Of(key, value string) string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return ""
	}
	return Labelled(buf.String(), fmt.Sprintf("%q:%q", key, value))
}

// sdkFrame is the prefix of the SDK's own functions in a stack.
const sdkFrame = "github.com/omniq/omniq/plugins-sdk."

// Labelled picks, from a goroutine profile written with debug=1,
// the stacks whose labels hold label (`"key":"value"`), and renders
// them: "goroutine stack (N goroutines):" and each frame's function and
// file:line, the frames from the first of the SDK's on left out.
func Labelled(profile, label string) string {
	var out strings.Builder
	for _, group := range strings.Split(profile, "\n\n") {
		lines := strings.Split(group, "\n")
		labelled := false
		for _, l := range lines {
			if strings.HasPrefix(l, "# labels: ") && strings.Contains(l, label) {
				labelled = true
			}
		}
		if !labelled || len(lines) == 0 {
			continue
		}
		count, _, _ := strings.Cut(lines[0], " @")
		if out.Len() > 0 {
			out.WriteString("\n")
		}
		if count == "1" {
			out.WriteString("goroutine of the handler at its deadline:\n")
		} else {
			fmt.Fprintf(&out, "%s goroutines of the handler at its deadline:\n", count)
		}
		for _, l := range lines {
			// "#\t0x4b7e4c\tmain.handler+0x2c\t\t/path/main.go:20" (tabs
			// repeated to align the columns)
			rest, ok := strings.CutPrefix(l, "#\t0x")
			if !ok {
				continue
			}
			f := strings.SplitN(strings.TrimLeft(strings.TrimLeft(rest, "0123456789abcdef"), "\t"), "\t", 2)
			if len(f) != 2 {
				continue
			}
			fn, at := strings.TrimSpace(f[0]), strings.TrimLeft(f[1], "\t")
			if i := strings.LastIndex(fn, "+0x"); i > 0 {
				fn = fn[:i]
			}
			if strings.HasPrefix(fn, sdkFrame) {
				break
			}
			fmt.Fprintf(&out, "%s(...)\n\t%s\n", fn, at)
		}
	}
	return out.String()
}
