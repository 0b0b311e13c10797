//go:build !linux

package pluginhost

// watchExit does nothing outside Linux: a plugin's end is known once its
// pipes close.
func watchExit(int, func()) {}
