package sandbox

import "testing"

func TestNeedsLeaf(t *testing.T) {
	for _, c := range []struct {
		name    string
		own     string
		procs   string
		hasType bool
		want    bool
	}{
		{"the system's root group is exempt from the rule", "/", "1\n42\n", false, false},
		{"a container's namespace root is not the real root", "/", "1\n42\n", true, true},
		{"a systemd service's group with its processes", "/system.slice/omniq.service", "42\n", true, true},
		{"an empty group gives controllers as it is", "/system.slice/omniq.service", "\n", true, false},
		{"an empty namespace root likewise", "/", "", true, false},
	} {
		if got := needsLeaf(c.own, c.procs, c.hasType); got != c.want {
			t.Errorf("%s: needsLeaf(%q, %q, %v) = %v, want %v", c.name, c.own, c.procs, c.hasType, got, c.want)
		}
	}
}
