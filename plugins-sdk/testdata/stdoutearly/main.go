// Command stdoutearly is a test plugin that prints to standard output
// before it calls sdk.Serve, as a plugin author's start-up banner or a
// library's init does: the process's standard output carries the
// runner's handshake, so those lines must not reach it.
package main

import (
	"context"
	"fmt"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func init() { fmt.Println("init line before Serve") }

func main() {
	fmt.Println("main line before Serve")
	mux := sdk.NewMux()
	mux.HandleFunc("early", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		return []byte("served"), nil
	})
	sdk.Serve(mux, sdk.Name("stdoutearly", "1"))
}
