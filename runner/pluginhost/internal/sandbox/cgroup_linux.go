package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cgroupParent is the directory, under the runner's own cgroup, that holds
// one cgroup per plugin process.
const cgroupParent = "omniq-plugins"

// cpuPeriod is the CFS period CPU quotas are expressed in (100 ms).
const cpuPeriod = 100_000

var cgroupSeq atomic.Uint64

// cgroup is one plugin process's cgroup, v1 or v2.
type cgroup struct {
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
	path string // for messages: the group's path below the hierarchy root
	pids string // the directory of its pids controller ("" if none)
	// cpuFile is the file that counts the CPU time of its processes:
	// cpuacct.usage (ns) on v1, cpu.stat (usage_usec) on v2; "" if none.
	cpuFile string
}

// cgroupMode reports which hierarchy plugin cgroups are made in: "v1",
// "v2", or "" when the host has none usable.
func cgroupMode() string {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return "v2"
	case cgroups.Legacy, cgroups.Hybrid:
		if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
			return "v1"
		}
	}
	return ""
}

// DefaultMemoryBytes is the memory limit of a plugin's cgroup when none is
// configured: half the machine's memory, so that no one plugin takes it
// all (0 if the machine's memory cannot be read).
func DefaultMemoryBytes() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	page := uint64(os.Getpagesize())
	return uint64(si.Totalram) * uint64(si.Unit) / 2 / page * page
}

// newCgroup creates the cgroup of one plugin process, named after the
// plugin, below the runner's own cgroup, with the limits set: the memory
// and process limits default to DefaultMemoryBytes and DefaultProcesses.
func newCgroup(name string, l Limits) (*cgroup, error) {
	sweepOnce.Do(sweep)
	if l.MemoryBytes == 0 {
		l.MemoryBytes = DefaultMemoryBytes()
	}
	if l.Processes == 0 {
		l.Processes = DefaultProcesses
	}
	leaf := fmt.Sprintf("%s/%s-%d-%d", cgroupParent, sanitize(name), os.Getpid(), cgroupSeq.Add(1))
	switch cgroupMode() {
	case "v1":
		return newCgroupV1(leaf, l)
	case "v2":
		return newCgroupV2(leaf, l)
	}
	return nil, errors.New("no cgroup hierarchy is mounted at /sys/fs/cgroup")
}

var sweepOnce sync.Once

// sweepWait bounds how long the sweep waits for the processes it killed
// in a dead runner's cgroups to exit before it removes the groups.
const sweepWait = 2 * time.Second

// sweep removes the plugin cgroups that runners killed before they could
// remove them left behind (their names end in the runner's pid and a
// sequence number), and kills what is still in them. A SIGKILLed
// runner's plugins die with it (the parent-death signal, and the PID
// namespace whose init is the plugin's shim), except where that cannot
// reach them: a cgroup v1 group frozen when the runner died (an older
// runner froze a group to kill it) holds its processes frozen, the
// fatal signal pending, until someone thaws it; without namespaces a
// process that left the plugin's process group stays.
func sweep() {
	var parents []string
	freezer := ""
	switch cgroupMode() {
	case "v1":
		for c := range v1Controllers {
			if p, err := cgroup1.NestedPath(cgroupParent)(c); err == nil {
				dir := filepath.Join("/sys/fs/cgroup", string(c), p)
				parents = append(parents, dir)
				if c == cgroup1.Freezer {
					freezer = dir
				}
			}
		}
	case "v2":
		if g, err := v2Base(); err == nil {
			parents = append(parents, filepath.Join("/sys/fs/cgroup", g, cgroupParent))
		}
	}
	var left []string // leftover groups, by their directories
	for _, parent := range parents {
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.IsDir() && leftBehind(e.Name()) {
				left = append(left, filepath.Join(parent, e.Name()))
			}
		}
	}
	if len(left) == 0 {
		return
	}
	killed := false
	for _, dir := range left {
		// Thawed first: a frozen v1 process does not act on SIGKILL.
		if freezer != "" && filepath.Dir(dir) == freezer {
			_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
		} else if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0)
		}
		for _, pid := range groupProcs(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = true
		}
	}
	deadline := time.Now().Add(sweepWait)
	for {
		busy := false
		for _, dir := range left {
			// Not removable while a killed process is still leaving it:
			// on cgroup v1 a group refuses its removal (EBUSY) for a
			// moment after its tasks file is empty, and a sweep that
			// tried once left a dead runner's memory group behind.
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				busy = true
			}
		}
		if !busy || !killed || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leftBehind reports whether a plugin cgroup named name (plugin, runner
// pid, sequence number) belongs to a runner that is no longer running.
func leftBehind(name string) bool {
	f := strings.Split(name, "-")
	if len(f) < 3 {
		return false
	}
	pid, err := strconv.Atoi(f[len(f)-2])
	return err == nil && pid != os.Getpid() && !runnerAlive(pid)
}

// groupProcs lists the processes in the cgroup at dir.
func groupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\n' || r == ' ' {
			return '_'
		}
		return r
	}, name)
}

// v1Controllers are the cgroup v1 controllers a plugin gets: the limits,
// and the freezer to kill its processes without a fork race.
// cpuacct counts their CPU time (Process.CPULimitReached).
var v1Controllers = map[cgroup1.Name]bool{cgroup1.Memory: true, cgroup1.Pids: true, cgroup1.Cpu: true, cgroup1.Cpuacct: true, cgroup1.Freezer: true}

func newCgroupV1(leaf string, l Limits) (*cgroup, error) {
	hierarchy := func() ([]cgroup1.Subsystem, error) {
		all, err := cgroup1.Default()
		if err != nil {
			return nil, err
		}
		var out []cgroup1.Subsystem
		for _, s := range all {
			if v1Controllers[s.Name()] {
				out = append(out, s)
			}
		}
		return out, nil
	}
	res := &specs.LinuxResources{}
	if l.MemoryBytes > 0 {
		m := int64(l.MemoryBytes)
		res.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if l.Processes > 0 {
		n := int64(l.Processes)
		res.Pids = &specs.LinuxPids{Limit: &n}
	}
	if l.CPUs > 0 {
		q, p := int64(l.CPUs*cpuPeriod), uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
	}
	// Nested below the runner's own cgroup of each controller, so a
	// limit on the runner bounds its plugins too.
	cg, err := cgroup1.New(cgroup1.NestedPath(leaf), res, cgroup1.WithHierarchy(hierarchy),
		func(c *cgroup1.InitConfig) error {
			c.InitCheck = func(s cgroup1.Subsystem, _ cgroup1.Path, _ error) error {
				if s.Name() == cgroup1.Memory {
					return errors.New("the memory controller is not available")
				}
				return cgroup1.ErrIgnoreSubsystem
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("create cgroup v1 %s: %w", leaf, err)
	}
	c := &cgroup{v1: cg, path: leaf}
	if p, err := cgroup1.NestedPath(leaf)(cgroup1.Pids); err == nil {
		c.pids = filepath.Join("/sys/fs/cgroup", string(cgroup1.Pids), p)
	}
	if p, err := cgroup1.NestedPath(leaf)(cgroup1.Cpuacct); err == nil {
		c.cpuFile = filepath.Join("/sys/fs/cgroup", string(cgroup1.Cpuacct), p, "cpuacct.usage")
	}
	return c, nil
}

var v2base struct {
	once  sync.Once
	group string
	err   error
}

// v2Base returns the cgroup v2 group that plugin cgroups go under: the
// runner's own group as it was at first use. A group with processes in it
// cannot give controllers to child groups (v2's "no internal processes"
// rule), so unless it is the root, the processes of the runner's group
// first move into a leaf beside the plugins' groups, omniq-runner — what
// systemd asks of a service with Delegate=yes.
func v2Base() (string, error) {
	v2base.once.Do(func() {
		own, err := cgroup2.NestedGroupPath("")
		if err != nil {
			v2base.err = fmt.Errorf("find the runner's cgroup: %w", err)
			return
		}
		v2base.group = own
		dir := filepath.Join("/sys/fs/cgroup", own)
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		_, typeErr := os.Stat(filepath.Join(dir, "cgroup.type"))
		if err != nil || !needsLeaf(own, string(procs), typeErr == nil) {
			return
		}
		leaf := filepath.Join(dir, "omniq-runner")
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			v2base.err = fmt.Errorf("create cgroup %s for the runner: %w", leaf, err)
			return
		}
		for _, pid := range strings.Fields(string(procs)) {
			err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(pid), 0)
			if err != nil && pid == strconv.Itoa(os.Getpid()) {
				v2base.err = fmt.Errorf("move the runner into cgroup %s: %w", leaf, err)
				return
			}
		}
	})
	return v2base.group, v2base.err
}

// needsLeaf says whether the runner's cgroup v2 group own, holding procs
// (its cgroup.procs), must first move its processes into a leaf before it
// can give controllers to plugin groups. Only the system's real root group
// is exempt from the "no internal processes" rule. Inside a container with
// its own cgroup namespace the group reads as "/" but is not the real root:
// that one has no cgroup.type file (hasType), every other group has.
func needsLeaf(own, procs string, hasType bool) bool {
	if own == "/" && !hasType {
		return false
	}
	return strings.TrimSpace(procs) != ""
}

func newCgroupV2(leaf string, l Limits) (*cgroup, error) {
	base, err := v2Base()
	if err != nil {
		return nil, err
	}
	group := filepath.Join(base, leaf)
	res := &cgroup2.Resources{}
	if l.MemoryBytes > 0 {
		m := int64(l.MemoryBytes)
		res.Memory = &cgroup2.Memory{Max: &m}
	}
	if l.Processes > 0 {
		res.Pids = &cgroup2.Pids{Max: int64(l.Processes)}
	}
	if l.CPUs > 0 {
		q, p := int64(l.CPUs*cpuPeriod), uint64(cpuPeriod)
		res.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&q, &p)}
	}
	// The memory and pids controllers are always enabled, so that usage
	// and out-of-memory kills are accounted even without a limit.
	if res.Memory == nil {
		res.Memory = &cgroup2.Memory{}
	}
	if res.Pids == nil {
		res.Pids = &cgroup2.Pids{}
	}
	m, err := cgroup2.NewManager("/sys/fs/cgroup", group, res)
	if err != nil {
		return nil, fmt.Errorf("create cgroup v2 %s (the runner's cgroup must be delegated to it, e.g. systemd Delegate=yes): %w", group, err)
	}
	dir := filepath.Join("/sys/fs/cgroup", group)
	return &cgroup{v2: m, path: group, pids: dir, cpuFile: filepath.Join(dir, "cpu.stat")}, nil
}

// add moves process pid into the cgroup.
func (c *cgroup) add(pid int) error {
	var err error
	if c.v1 != nil {
		err = c.v1.AddProc(uint64(pid))
	} else {
		err = c.v2.AddProc(uint64(pid))
	}
	if err != nil {
		return fmt.Errorf("move process %d into cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

// oomKills returns how many processes the kernel killed in the cgroup for
// want of memory.
func (c *cgroup) oomKills() uint64 {
	if c.v1 != nil {
		st, err := c.v1.Stat(cgroup1.IgnoreNotExist)
		if err != nil || st.MemoryOomControl == nil {
			return 0
		}
		return st.MemoryOomControl.OomKill
	}
	st, err := c.v2.Stat()
	if err != nil || st.MemoryEvents == nil {
		return 0
	}
	return st.MemoryEvents.OomKill
}

// pidsLimitHits returns how many times a fork or clone in the cgroup
// failed for its pids limit (the "max" of pids.events, v1 and v2 alike).
func (c *cgroup) pidsLimitHits() uint64 {
	if c.pids == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(c.pids, "pids.events"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "max" {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime returns the CPU time the processes of the cgroup used, the
// reaped ones included; ok is false when the cgroup does not count it.
func (c *cgroup) cpuTime() (d time.Duration, ok bool) {
	if c.cpuFile == "" {
		return 0, false
	}
	b, err := os.ReadFile(c.cpuFile)
	if err != nil {
		return 0, false
	}
	if c.v1 != nil {
		ns, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns), err == nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "usage_usec" {
			us, err := strconv.ParseUint(f[1], 10, 64)
			return time.Duration(us) * time.Microsecond, err == nil
		}
	}
	return 0, false
}

// procs lists the processes in the cgroup.
func (c *cgroup) procs() []int {
	var out []int
	if c.v1 != nil {
		ps, _ := c.v1.Processes(cgroup1.Memory, true)
		for _, p := range ps {
			out = append(out, p.Pid)
		}
		return out
	}
	ps, _ := c.v2.Procs(true)
	for _, p := range ps {
		out = append(out, int(p))
	}
	return out
}

// kill sends SIGKILL to every process in the cgroup.
//
// On cgroup v1 it does not freeze the group first: a v1 process frozen
// does not act on SIGKILL, so a runner SIGKILLed between the freeze and
// the thaw left its plugin frozen for good (found by omniq-chaos
// cancel-kill). A process forked between the listing and the kills is
// left for the next kill: destroy kills until the group is empty, and
// where the runner is root the plugin's shim is the init of a PID
// namespace, whose death kills every process in it at once.
func (c *cgroup) kill() {
	if c.v2 != nil {
		_ = c.v2.Kill()
		return
	}
	for _, pid := range c.procs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// destroy kills what is left in the cgroup, waits (up to wait) for it to
// empty, and removes it.
func (c *cgroup) destroy(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		c.kill()
		if len(c.procs()) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var err error
	if c.v1 != nil {
		err = c.v1.Delete()
	} else {
		err = c.v2.Delete()
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", c.path, err)
	}
	return nil
}

// runnerAlive reports whether process pid may still be a runner using what
// it named after itself (a process of another user counts as alive).
func runnerAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
