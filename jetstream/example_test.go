package jetstream_test

import (
	"context"
	"fmt"
	"os"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// Start an embedded server, submit a task, and read its state: what a
// runner will claim.
func Example() {
	dir, _ := os.MkdirTemp("", "omniq-example-")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, NoListen: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	nc, _ := srv.Connect()
	defer nc.Close()

	ctx := context.Background()
	client, err := jetstream.New(ctx, nc, jetstream.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := client.Submit(ctx, jetstream.SubmitRequest{ID: "order-42", Function: "charge_card", Payload: []byte(`{"cents":1999}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Record.Task.ID, res.Record.Task.Function, res.Record.Task.Status)

	// The same id again, within the dedupe window: refused.
	_, err = client.Submit(ctx, jetstream.SubmitRequest{ID: "order-42", Function: "charge_card"})
	fmt.Println(err)
	// Output:
	// order-42 charge_card pending
	// duplicate task id: order-42 was submitted moments ago
}
