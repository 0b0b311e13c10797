package sandbox

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A plugin may not create user namespaces. In one, an unprivileged
// process is root with every capability over the namespaces it then
// creates (`unshare -r id` says uid 0): no way out of the plugin's own
// namespaces or cgroup, but most of the kernel's privileged code within
// its reach, the usual first step of a kernel exploit. A seccomp filter,
// inherited by everything the plugin starts and impossible to remove,
// refuses unshare and clone with CLONE_NEWUSER (EPERM) and clone3 (ENOSYS,
// whose flags a filter cannot read; libc and Go fall back to clone).

// syscallTable is the system call numbers the filter checks for one
// architecture's calling convention.
type syscallTable struct {
	arch    uint32   // AUDIT_ARCH_*
	flagged []uint32 // unshare and clone: refused with CLONE_NEWUSER in their first argument
	nosys   []uint32 // clone3: refused outright
}

// x32Bit marks the x32 ABI's system calls on x86-64.
const x32Bit = 0x40000000

// seccompTables are the calling conventions a process on this host can
// use; nil where the filter is not implemented.
func seccompTables() []syscallTable {
	switch runtime.GOARCH {
	case "amd64":
		return []syscallTable{
			{arch: unix.AUDIT_ARCH_X86_64, flagged: []uint32{272, 56, x32Bit | 272, x32Bit | 56}, nosys: []uint32{435, x32Bit | 435}},
			{arch: unix.AUDIT_ARCH_I386, flagged: []uint32{310, 120}, nosys: []uint32{435}},
		}
	case "arm64":
		return []syscallTable{
			{arch: unix.AUDIT_ARCH_AARCH64, flagged: []uint32{97, 220}, nosys: []uint32{435}},
			{arch: 0x40000028 /* AUDIT_ARCH_ARM */, flagged: []uint32{337, 120}, nosys: []uint32{435}},
		}
	}
	return nil
}

// seccompAvailable reports whether this host can confine plugins with
// the filter: the kernel has seccomp filters, and the filter exists for
// this architecture.
func seccompAvailable() bool {
	_, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail")
	return err == nil && seccompTables() != nil
}

// bpfProgram assembles a classic BPF program with symbolic jump targets.
type bpfProgram struct {
	insns  []unix.SockFilter
	jumps  map[int][2]string // instruction index: its jt and jf labels
	labels map[string]int
}

func (p *bpfProgram) label(name string) { p.labels[name] = len(p.insns) }

func (p *bpfProgram) op(code uint16, k uint32) {
	p.insns = append(p.insns, unix.SockFilter{Code: code, K: k})
}

func (p *bpfProgram) jeq(k uint32, jt, jf string) {
	p.jumps[len(p.insns)] = [2]string{jt, jf}
	p.op(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, k)
}

func (p *bpfProgram) assemble() ([]unix.SockFilter, error) {
	for i, j := range p.jumps {
		for n, name := range j {
			off := 0
			if name != "" {
				to, ok := p.labels[name]
				if !ok || to <= i || to-i-1 > 255 {
					return nil, errors.New("seccomp filter: bad jump to " + name)
				}
				off = to - i - 1
			}
			if n == 0 {
				p.insns[i].Jt = uint8(off)
			} else {
				p.insns[i].Jf = uint8(off)
			}
		}
	}
	return p.insns, nil
}

// seccompFilter builds the filter: per architecture, its system calls
// checked as described above; any other architecture's calls fail.
func seccompFilter() ([]unix.SockFilter, error) {
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ret  = unix.BPF_RET | unix.BPF_K
		and  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		nr   = 0 // offsetof(struct seccomp_data, nr)
		arch = 4 // offsetof(struct seccomp_data, arch)
	)
	arg0 := uint32(16) // the low 32 bits of args[0]
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
		arg0 += 4
	}
	p := &bpfProgram{jumps: map[int][2]string{}, labels: map[string]int{}}
	tables := seccompTables()
	for i, t := range tables {
		next := "arch" + string(rune('0'+i+1))
		p.label("arch" + string(rune('0'+i)))
		p.op(ld, arch)
		p.jeq(t.arch, "", next)
		p.op(ld, nr)
		for _, n := range t.flagged {
			p.jeq(n, "flags", "")
		}
		for _, n := range t.nosys {
			p.jeq(n, "enosys", "")
		}
		p.op(ret, unix.SECCOMP_RET_ALLOW)
	}
	p.label("arch" + string(rune('0'+len(tables))))
	p.op(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS))
	p.label("flags")
	p.op(ld, arg0)
	p.op(and, unix.CLONE_NEWUSER)
	p.jeq(0, "allow", "")
	p.op(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))
	p.label("allow")
	p.op(ret, unix.SECCOMP_RET_ALLOW)
	p.label("enosys")
	p.op(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS))
	return p.assemble()
}

// installSeccomp confines the calling thread and everything it starts
// from now on. no_new_privs must be set first.
func installSeccomp() error {
	insns, err := seccompFilter()
	if err != nil {
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	_, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(insns)
	if errno != 0 {
		return syscall.Errno(errno)
	}
	return nil
}
