package submitcmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// jsonListBuffer is how much of a listing writeJSONList holds before it
// writes it out.
const jsonListBuffer = 64 << 10

// writeJSONList writes {key: [n items], tail's fields...} to w exactly as
// writeJSON writes the same object, an item at a time: item(i) is
// converted and encoded only when its turn comes. writeJSON encodes a
// whole value before it writes a byte: list --limit 100000 --json (the
// pipeline docs/operations.md gives for cancel --from) held the 100,000
// converted tasks and the 112 MB document besides the records, 726 MB
// against 297 MB for the same page as a table. tail is a struct whose
// fields follow the list (its JSON an object).
func writeJSONList[T any](w io.Writer, key string, n int, item func(i int) T, tail any) error {
	bw := bufio.NewWriterSize(w, jsonListBuffer)
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, "{\n  %s: [", k)
	for i := range n {
		b, err := json.MarshalIndent(item(i), "    ", "  ")
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		bw.Write(b)
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteByte(']')
	t, err := json.MarshalIndent(tail, "", "  ")
	if err != nil {
		return err
	}
	if len(t) < 2 || t[0] != '{' {
		return fmt.Errorf("writeJSONList: tail %T is not a JSON object", tail)
	}
	if rest := t[1 : len(t)-1]; len(rest) > 0 {
		// "{\n  \"total\": 3\n}" follows as ",\n  \"total\": 3\n}".
		bw.WriteByte(',')
		bw.Write(rest)
	} else {
		bw.WriteByte('\n')
	}
	bw.WriteString("}\n")
	return bw.Flush()
}
