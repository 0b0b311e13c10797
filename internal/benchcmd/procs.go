package benchcmd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what /proc/<pid>/stat says about one process.
type procStat struct {
	pid, ppid int
	comm      string
	cpu       time.Duration // utime + stime, own threads only
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields, want at least 15", pid, len(f)+2)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return procStat{pid: pid, ppid: ppid, comm: string(b[open+1 : end]),
		cpu: time.Duration(ut+st) * time.Second / clockTicks}, nil
}

// peakRSS reads VmHWM, the process's peak resident set, in bytes.
func peakRSS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// descendants returns every process below pid (children, their children...).
func descendants(pid int) []procStat {
	ents, _ := os.ReadDir("/proc")
	byParent := map[int][]procStat{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil {
			byParent[st.ppid] = append(byParent[st.ppid], st)
		}
	}
	var out []procStat
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range byParent[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// proc is one measured process: its role in the benchmark and its pid.
type proc struct {
	role string
	pid  int
}

// snapshot is the CPU time of each measured process at one moment.
type snapshot struct {
	cpu  map[proc]time.Duration
	roll []proc
}

// Roles of the measured processes.
const (
	roleBench          = "omniq-bench (nats-server + bench clients)"
	roleBenchAlone     = "omniq-bench (bench clients)"
	roleNATSServer     = "nats-server"
	roleRunner         = "omniq-runner"
	roleRunnerEmbedded = "omniq-runner (with its nats-server)"
)

// serverPlace is where the nats-server runs.
type serverPlace int

const (
	serverInBench    serverPlace = iota // inside omniq-bench
	serverOwnProcess                    // its own process (--nats-server)
	serverInRunner                      // inside omniq-runner (--embedded)
)

// processes lists the processes to measure: this process (with the
// nats-server when it runs inside), the nats-server's process when it has
// one (serverPid > 0), the plugin processes of the bench's own, the runner
// (runnerPid > 0, with the nats-server when it runs inside) and the
// runner's plugin processes.
func processes(runnerPid, serverPid int, place serverPlace) []proc {
	self := os.Getpid()
	role, runnerRole := roleBenchAlone, roleRunner
	switch place {
	case serverInBench:
		role = roleBench
	case serverInRunner:
		runnerRole = roleRunnerEmbedded
	}
	ps := []proc{{role: role, pid: self}}
	all := descendants(self)
	var own []procStat // the bench's own plugins, with their sandboxes
	for _, d := range all {
		switch {
		case d.pid == runnerPid:
			ps = append(ps, proc{role: runnerRole, pid: d.pid})
		case d.pid == serverPid:
			ps = append(ps, proc{role: roleNATSServer, pid: d.pid})
		case d.ppid == self && progName(d) != "omniq-submit":
			own = append(own, d)
			own = append(own, descendants(d.pid)...)
		}
	}
	ps = append(ps, plugins(own, "bench's own")...)
	if runnerPid > 0 {
		ps = append(ps, plugins(descendants(runnerPid), "runner's")...)
	}
	return ps
}

// plugins names plugin processes and the sandbox shims they run under:
// the runner starts each plugin through a shim that stays its parent, and
// the shim is named after its plugin.
func plugins(ds []procStat, owner string) []proc {
	var ps []proc
	for _, d := range ds {
		name := progName(d)
		if name != sandboxShim {
			ps = append(ps, proc{role: "plugin " + name + " (" + owner + ")", pid: d.pid})
			continue
		}
		for _, c := range ds {
			if c.ppid == d.pid {
				name = progName(c)
			}
		}
		ps = append(ps, proc{role: "sandbox of " + name + " (" + owner + ")", pid: d.pid})
	}
	return ps
}

// sandboxShim is the argv[0] of the shim through which the runner starts
// each plugin in its sandbox (see runner/pluginhost/internal/sandbox).
const sandboxShim = "omniq-plugin-sandbox"

// progName is the base name of a process's argv[0], or its comm when the
// command line cannot be read: a plugin executed from a file descriptor
// has a comm such as "3".
func progName(p procStat) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	if err != nil || len(b) == 0 {
		return p.comm
	}
	arg0, _, _ := bytes.Cut(b, []byte{0})
	if len(arg0) == 0 {
		return p.comm
	}
	return filepath.Base(string(arg0))
}

// takeSnapshot reads the CPU time of the processes measured now.
func takeSnapshot(runnerPid, serverPid int, place serverPlace) snapshot {
	s := snapshot{cpu: map[proc]time.Duration{}}
	for _, p := range processes(runnerPid, serverPid, place) {
		if st, err := readStat(p.pid); err == nil {
			s.cpu[p] = max(st.cpu, threadsCPU(p.pid))
			s.roll = append(s.roll, p)
		}
	}
	return s
}

// threadsCPU is the CPU time pid's live threads have used, to the
// nanosecond: the sum of the run times in their
// /proc/<pid>/task/<tid>/schedstat (0 where the kernel has none).
// /proc/<pid>/stat counts whole 10 ms ticks, which a short section can
// stay under in every process; it does keep the time of threads that
// have exited, which this sum loses, so a snapshot takes the larger.
func threadsCPU(pid int) time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tids, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tids {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		run, _, _ := bytes.Cut(b, []byte{' '})
		if ns, err := strconv.ParseInt(string(run), 10, 64); err == nil {
			total += time.Duration(ns)
		}
	}
	return total
}

// usage is the CPU each process used between before and after, and its
// peak RSS so far; tasks is the number of tasks the CPU is divided by for
// the per-1,000 figure (0: none).
func usage(before, after snapshot, tasks int) []ProcessUsage {
	var out []ProcessUsage
	for _, p := range after.roll {
		// A process started since counts whole. A thread that exited can
		// make the sum of the rest fall below the stat figure taken before
		// (see threadsCPU), by less than a tick: no negative time.
		cpu := max(after.cpu[p]-before.cpu[p], 0)
		u := ProcessUsage{Process: p.role, PID: p.pid, CPUSeconds: cpu.Seconds(), PeakRSSMiB: float64(peakRSS(p.pid)) / (1 << 20)}
		if tasks > 0 {
			u.CPUSecondsPer1000 = cpu.Seconds() * 1000 / float64(tasks)
		}
		out = append(out, u)
	}
	slices.SortStableFunc(out, func(a, b ProcessUsage) int { return strings.Compare(roleOrder(a.Process), roleOrder(b.Process)) })
	return out
}

func roleOrder(role string) string {
	switch {
	case strings.HasPrefix(role, "omniq-bench"):
		return "0"
	case role == roleNATSServer:
		return "1"
	case role == roleRunner:
		return "2"
	}
	return "3" + role
}

// machine describes this machine.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m.MemoryGiB = float64(kb) / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadAverage returns the 1-minute load average.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// exeIn returns dir/name, or an error saying how to build it.
func exeIn(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s: no executable here (build it with `make`, or point --bin / --plugins-dir elsewhere)", p)
	}
	return p, nil
}
