package runner_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

const (
	helperEnv        = "OMNIQ_RUNNER_HELPER_URL"
	helperPluginsEnv = "OMNIQ_RUNNER_HELPER_PLUGINS"
)

// runHelper is a runner in a separate process, for tests that SIGKILL it.
func runHelper() {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: os.Getenv(helperEnv)})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	client, err := jetstream.New(ctx, nc, jetstream.Config{})
	if err != nil {
		fail(err)
	}
	host, err := pluginhost.StartHost(ctx, pluginhost.HostConfig{Dir: os.Getenv(helperPluginsEnv)})
	if err != nil {
		fail(err)
	}
	r, err := runner.New(runner.Config{Client: client, Plugins: host, ID: "helper", AckWait: 2 * time.Second})
	if err != nil {
		fail(err)
	}
	if err := r.Start(ctx); err != nil {
		fail(err)
	}
	fmt.Println("ready")
	select {}
}
