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
// each cut where the SDK's frames that called the handler begin: what the
// handler was doing.
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
// file:line, the outermost run of the SDK's frames (those that called the
// handler) and what called them left out.
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
		type frame struct{ fn, at string }
		var frames []frame
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
			frames = append(frames, frame{fn, at})
		}
		// Cut where the SDK's frames that called the handler begin: the
		// outermost run of them. An SDK call the handler was in at its
		// deadline (sdk.ReportProgress) is where it was, and the handler
		// below it is kept: cut at the first SDK frame, its traceback
		// held only what the call ran (protobuf's), not the handler.
		end := len(frames)
		for i := len(frames) - 1; i >= 0; i-- {
			if strings.HasPrefix(frames[i].fn, sdkFrame) {
				end = i
				for end > 0 && strings.HasPrefix(frames[end-1].fn, sdkFrame) {
					end--
				}
				break
			}
		}
		for _, f := range frames[:end] {
			fmt.Fprintf(&out, "%s(...)\n\t%s\n", f.fn, f.at)
		}
	}
	return out.String()
}
