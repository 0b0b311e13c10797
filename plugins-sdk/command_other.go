//go:build !unix

package sdk

import "os/exec"

// ownGroup leaves cmd as exec.CommandContext made it: process groups are
// a Unix notion.
func ownGroup(*exec.Cmd) {}
