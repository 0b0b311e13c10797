// Command logging is a test plugin that logs the way plugin authors do:
// to os.Stderr with a level prefix, to standard output, and through the
// standard library's log package, and as hclog JSON.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/hashicorp/go-hclog"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true})
	mux := sdk.NewMux()
	mux.HandleFunc("log", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		fmt.Fprintf(os.Stderr, "[WARN] stderr warning %s\n", t.Payload)
		fmt.Fprintf(os.Stdout, "stdout line %s\n", t.Payload)
		log.Printf("log package line %s", t.Payload)
		log.Printf("[WARN] log package warning %s", t.Payload)
		logger.Error("hclog error", "task", t.ID)
		return []byte("logged"), nil
	})
	sdk.Serve(mux, sdk.Name("logging", "1"))
}
