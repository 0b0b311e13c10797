package main

import (
	"fmt"
	"io"
)

// needsLinux writes what omniq-runner says on a system other than Linux
// (goos) and returns its exit status, 2: the runner confines plugins with
// Linux process controls that other systems lack.
func needsLinux(w io.Writer, goos string) int {
	fmt.Fprintf(w, "omniq-runner needs Linux: it confines plugins with Linux process controls (parent-death signal, rlimits, cgroups, namespaces) that %s lacks. Run it on a Linux machine, in a container or a VM; omniq-submit and plugins built with the Go SDK work on %s.\n", goos, goos)
	return 2
}
