// Command rawout is a test plugin that writes to the process's raw
// standard output and error (file descriptors 1 and 2, as a C library or a
// child process would): rawout writes as many bytes as its payload says to
// stdout in one line without a newline, rawerr as many lines as its
// payload says to stderr, each "[ERROR] line N"; both return "written".
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
		if err := writeAll(1, bytes.Repeat([]byte("x"), n)); err != nil {
			return nil, err
		}
		return []byte("written"), nil
	})
	mux.HandleFunc("rawerr", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		n, err := strconv.Atoi(string(t.Payload))
		if err != nil {
			return nil, err
		}
		var b []byte
		for i := 0; i < n; i++ {
			b = append(b, "[ERROR] line "+strconv.Itoa(i)+"\n"...)
		}
		if err := writeAll(2, b); err != nil {
			return nil, err
		}
		return []byte("written"), nil
	})
	sdk.Serve(mux, sdk.Name("rawout", "test"))
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		w, err := syscall.Write(fd, b)
		if err != nil {
			return err
		}
		b = b[w:]
	}
	return nil
}
