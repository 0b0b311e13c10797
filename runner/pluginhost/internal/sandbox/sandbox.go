package sandbox

import (
	"errors"
	"os"
)

// ErrKilled: Kill came before Start started the process, so it did not.
var ErrKilled = errors.New("sandbox: killed before it started")

// ExePath is the path a plugin is executed through: the descriptor of the
// file the runner checked, so that what was checked is what runs. A
// script's interpreter knows the script by this path, and names it in
// its errors.
const ExePath = "/proc/self/fd/3"

// DefaultUser is the user plugins run as when the runner is root and no
// user is configured.
const DefaultUser = "nobody"

// DefaultProcesses is the process and thread limit of a plugin's cgroup
// when none is configured: room for any ordinary plugin, a stop for a
// fork bomb long before the machine's own limits.
const DefaultProcesses = 1024

// Limits bound one plugin process. Zero means no limit, except for the
// memory and process limits of a plugin that has a cgroup: those default
// to DefaultMemoryBytes and DefaultProcesses.
type Limits struct {
	// MemoryBytes bounds the memory of the plugin and everything it
	// starts, shared memory and temporary files included (the cgroup's
	// memory limit). Without cgroups it falls back to the address-space
	// limit RLIMIT_AS of each process.
	MemoryBytes uint64
	// CPUs bounds CPU use, in CPUs (1.5 is one and a half); cgroups only.
	CPUs float64
	// CPUSeconds bounds each process's CPU time (RLIMIT_CPU).
	CPUSeconds uint64
	// OpenFiles bounds each process's file descriptors (RLIMIT_NOFILE).
	OpenFiles uint64
	// Processes bounds the processes and threads of the plugin together
	// (the cgroup's pids limit). Without cgroups it falls back to
	// RLIMIT_NPROC, which counts every process of the plugin's user.
	Processes uint64
}

// Config says how to start one plugin process.
type Config struct {
	// Name names the plugin in the cgroup's and temporary directory's
	// names and in errors.
	Name string
	// Exe is the plugin executable, opened by the caller: this very file
	// is executed, whatever the path names by then.
	Exe *os.File
	// Args are the plugin's arguments, Args[0] its path.
	Args []string
	// Env is the plugin's whole environment.
	Env []string
	// User is the user (name or uid) the plugin runs as when the runner
	// is root; "" means DefaultUser. Ignored when the runner is not root.
	User string
	// Limits bound the process.
	Limits Limits
}

// Isolation says what confines a started plugin process.
type Isolation struct {
	// User is the user the plugin runs as ("" when the runner's own).
	User string
	// UID and GID are the plugin's user and group ids.
	UID, GID int
	// Namespaces says the plugin has its own PID, mount and IPC namespaces:
	// its own /proc, /dev/shm and temporary directory, and everything it
	// starts dies with it.
	Namespaces bool
	// Cgroup is the plugin's cgroup path ("" when it has none).
	Cgroup string
	// TempDir is the plugin's private temporary directory (its TMPDIR).
	TempDir string
	// NotEnforced lists what could not be applied to this process, and
	// why.
	NotEnforced []string
}

// User is a user a plugin can run as.
type User struct {
	// Name is the user's name.
	Name string
	// Home is the user's home directory.
	Home string
	// UID and GID are the user's id and primary group id.
	UID, GID int
}
