// Command rawout is a test plugin that writes to the process's raw
// standard output and error (file descriptors 1 and 2, as a C library or a
// child process would): rawout writes as many bytes as its payload says to
// stdout in one line without a newline, rawerr as many lines as its
// payload says to stderr, each "[ERROR] line N", rawerrline its payload as
// one line to stderr, and errflood, for a payload "BYTES SECONDS LINE",
// LINE again and again to stderr at up to BYTES a second for SECONDS
// (outflood: to stdout), rawcrash its payload as one line to stderr and
// then exits with status 3; the
// others return "written", the floods "wrote N bytes".
package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

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
	mux.HandleFunc("rawerrline", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		if err := writeAll(2, append(t.Payload, '\n')); err != nil {
			return nil, err
		}
		return []byte("written"), nil
	})
	mux.HandleFunc("rawcrash", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		if err := writeAll(2, append(t.Payload, '\n')); err != nil {
			return nil, err
		}
		syscall.Exit(3)
		return nil, nil
	})
	mux.HandleFunc("errflood", func(ctx context.Context, t *sdk.Task) ([]byte, error) { return flood(ctx, 2, t) })
	mux.HandleFunc("outflood", func(ctx context.Context, t *sdk.Task) ([]byte, error) { return flood(ctx, 1, t) })
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

func flood(ctx context.Context, fd int, t *sdk.Task) ([]byte, error) {
	var rate, secs int
	var line string
	if _, err := fmt.Sscan(string(t.Payload), &rate, &secs, &line); err != nil {
		return nil, fmt.Errorf("flood: payload %q is not \"BYTES SECONDS LINE\": %w", t.Payload, err)
	}
	chunk := bytes.Repeat([]byte(line+"\n"), max(1, rate/100/(len(line)+1)))
	end := time.Now().Add(time.Duration(secs) * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	written := 0
	for time.Now().Before(end) {
		if err := writeAll(fd, chunk); err != nil {
			return nil, err
		}
		written += len(chunk)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	return []byte(fmt.Sprintf("wrote %d bytes", written)), nil
}
