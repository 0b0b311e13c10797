// Package pluginhost runs OmniQ plugins as child processes and turns every
// way a task can end in them into an Outcome.
//
// A Process is one plugin process started through hashicorp/go-plugin
// (gRPC, AutoMTLS) with stdin from /dev/null, a scrubbed environment,
// SIGKILL on the runner's death, and an optional (or required) SHA-256
// check of the very file it executes. When the runner is root the plugin
// runs as an unprivileged user (default nobody), in its own PID, mount and IPC
// namespaces (its own /proc, /dev/shm and temporary directory; everything
// it starts dies with it); where the host has cgroups (v1 or v2) it gets a
// cgroup for memory, processes and CPU, joined before its first
// instruction. docs/plugin-isolation.md says what is and is not enforced.
//
// A Supervisor owns one plugin binary: it runs tasks on it concurrently up to
// a limit, restarts it with exponential backoff after a crash, quarantines it
// after repeated crashes or failed starts (its tasks fail plugin_unavailable until a
// cool-down ends), kills it when a handler ignores its deadline, and reports
// a crash to every task in flight as plugin_crash with how the process ended
// and the tail of its stderr.
//
// A Host runs every plugin of a directory and routes tasks by function name.
package pluginhost
