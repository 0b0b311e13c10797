// Package version says which build of OmniQ is running, from the Go build
// information: the module version (or "(devel)" for a local build), the
// source revision when the build recorded one, and the Go version.
package version

import (
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the main module's version, "(devel)" for a local build.
	Version string
	// Revision is the source revision (with "+dirty" for uncommitted
	// changes), "" when the build recorded none.
	Revision string
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// Get returns this binary's build information.
func Get() Info {
	i := Info{Version: "(devel)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if bi.Main.Version != "" {
		i.Version = bi.Main.Version
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if i.Revision != "" && dirty {
		i.Revision += "+dirty"
	}
	return i
}

// String is the one line a --version flag prints for program.
func (i Info) String(program string) string {
	s := program + " " + i.Version
	if i.Revision != "" {
		s += " (" + i.Revision + ")"
	}
	return s + " " + i.GoVersion
}
