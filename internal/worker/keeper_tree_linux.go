package worker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// procStat is what the keeper needs of /proc/PID/stat.
type procStat struct {
	pid, ppid int
	comm      string
	state     byte
	// start is when the process started, in clock ticks after boot: with
	// the pid, it names one process even after the pid is reused.
	start uint64
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses the line of /proc/PID/stat. The command name, in
// parentheses, may itself hold spaces and parentheses, so the fields
// after it are found from the last ')'.
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", b)
	}
	// Fields 3 (state) onwards; start time is field 22.
	f := bytes.Fields(b[end+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", b)
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	start, err2 := strconv.ParseUint(string(f[19]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q: %w", b, err)
	}
	return procStat{pid: pid, ppid: ppid, comm: string(b[open+1 : end]), state: f[0][0],
		start: start}, nil
}

// descendants returns the living processes whose chain of parents leads
// to root, as one walk of /proc sees them. The walk is not atomic: a
// process that forks, or is adopted, while it runs may be missed, which
// is why callers walk again until nothing is left.
func descendants(root int) []procStat {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	children := map[int][]procStat{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		p, err := readStat(pid)
		if err != nil {
			continue // gone since the listing
		}
		children[p.ppid] = append(children[p.ppid], p)
	}
	var out []procStat
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			queue = append(queue, c.pid)
			if c.state != 'Z' && c.state != 'X' {
				out = append(out, c)
			}
		}
	}
	return out
}

// signalProcess sends sig to p, the very process the walk saw: it opens a
// pidfd for p's pid, then checks that the process it holds has p's start
// time, so a pid reused since the walk is left alone. It returns ESRCH
// when p is gone. On kernels without pidfds (before 5.3) it checks, then
// kills by pid, leaving a short window for reuse.
func signalProcess(p procStat, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, syscall.ENOSYS) {
		if !sameProcess(p) {
			return syscall.ESRCH
		}
		return syscall.Kill(p.pid, sig)
	}
	if err != nil {
		return syscall.ESRCH
	}
	defer unix.Close(fd)
	if !sameProcess(p) {
		return syscall.ESRCH
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// sameProcess reports whether p's pid still names the process p was read
// from.
func sameProcess(p procStat) bool {
	now, err := readStat(p.pid)
	return err == nil && now.start == p.start
}
