package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

// A plugin's main registers its handlers and serves them; here the handler
// is called directly instead of through Serve.
func Example() {
	mux := sdk.NewMux()
	mux.HandleFunc("greet", func(ctx context.Context, task *sdk.Task) ([]byte, error) {
		var req struct{ Name string }
		if err := json.Unmarshal(task.Payload, &req); err != nil {
			return nil, sdk.Permanent(sdk.WithType("ValidationError", err))
		}
		return []byte("hello " + req.Name), nil
	}, sdk.Timeout(10*time.Second))
	// In main: sdk.Serve(mux)

	out, failure := sdk.Invoke(context.Background(), mux, &sdk.Task{Function: "greet", Payload: []byte(`{"Name":"Ada"}`)})
	fmt.Println(string(out), failure)
	_, failure = sdk.Invoke(context.Background(), mux, &sdk.Task{Function: "greet", Payload: []byte(`not json`)})
	fmt.Println(failure.ErrorType, failure.Permanent)
	// Output:
	// hello Ada <nil>
	// ValidationError true
}
