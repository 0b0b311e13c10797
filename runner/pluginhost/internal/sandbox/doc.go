// Package sandbox starts an untrusted plugin process confined on Linux:
// in its own cgroup (memory, process count and CPU, cgroup v1 or v2, joined
// before the plugin's first instruction), as an unprivileged user, in new
// PID, mount and IPC namespaces with a private /tmp-style directory, /dev/shm and
// /proc, with resource limits set before it runs, and executed from the very
// file descriptor whose contents were checked. Where the runner lacks root
// or the host lacks cgroups, it does what it can and says what it did not.
//
// It works by re-executing the current binary (/proc/self/exe) as a short
// shim that waits until the runner has placed it in its cgroup, sets the
// rest up and then execs the plugin; the shim is recognised by its argv[0]
// in this package's init, so any binary that links the package can start
// sandboxed plugins. Confinement is Linux-only; elsewhere plugins start
// unconfined, and Limitations says so.
package sandbox
