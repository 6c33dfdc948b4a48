package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// DescribeMachine reads the CPU count, memory and kernel of this machine.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				m.MemoryMiB = kib / 1024
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

// GitHead returns the commit checked out in dir and whether Go files or
// go.mod differ from it, in which case the figures measure more than the
// commit.
func GitHead(ctx context.Context, dir string) (commit string, dirty bool, err error) {
	out, err := runCommand(ctx, dir, nil, "git", "rev-parse", "HEAD")
	if err != nil {
		return "", false, fmt.Errorf("find the commit measured: %w", err)
	}
	commit = strings.TrimSpace(out)
	status, err := runCommand(ctx, dir, nil, "git", "status", "--porcelain", "--", "*.go", "go.mod", "go.sum")
	if err != nil {
		return "", false, fmt.Errorf("find the commit measured: %w", err)
	}
	return commit, strings.TrimSpace(status) != "", nil
}

// freePort returns a loopback TCP port that was free at the time of the
// call.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// LoadAverage returns the machine's one-minute load average, or -1 if it
// cannot be read.
func LoadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
