//go:build !linux

package main

import (
	"os"
	"runtime"
)

func main() {
	os.Exit(needsLinux(os.Stderr, runtime.GOOS))
}
