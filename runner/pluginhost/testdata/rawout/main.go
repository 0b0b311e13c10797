// Command rawout is a test plugin whose function rawout writes as many
// bytes as its payload says to the process's raw standard output (file
// descriptor 1, as a C library or a child process would), in one line
// without a newline, then returns "written".
package main

import (
	"bytes"
	"context"
	"strconv"
	"syscall"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("rawout", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		n, err := strconv.Atoi(string(t.Payload))
		if err != nil {
			return nil, err
		}
		// go-plugin replaces os.Stdout; descriptor 1 is still the pipe to
		// the runner.
		for b := bytes.Repeat([]byte("x"), n); len(b) > 0; {
			w, err := syscall.Write(1, b)
			if err != nil {
				return nil, err
			}
			b = b[w:]
		}
		return []byte("written"), nil
	})
	sdk.Serve(mux, sdk.Name("rawout", "test"))
}
