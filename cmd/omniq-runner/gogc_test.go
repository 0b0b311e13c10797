//go:build linux

package main

import (
	"runtime/debug"
	"testing"
)

// The runner collects at GOGC 400 unless the environment sets GOGC.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	tuneGC(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Fatalf("GOGC %d without the variable, want %d", got, gcPercent)
	}
	tuneGC(func(k string) string { return map[string]string{"GOGC": "50"}[k] })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC %d with GOGC=50 in the environment, want it left alone (100 here)", got)
	}
}
