package chaos

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
	"github.com/regent-ci/regent/internal/testutil/proxy"
)

// startTimeout bounds the wait for a master to say it started.
const startTimeout = 30 * time.Second

// node is a master or a worker process of the campaign, restartable under
// the same name, address and directories. Its fields are guarded by mu;
// held marks a node that a fault is acting on, which the monitor leaves
// alone.
type node struct {
	name string
	spec procs.Spec

	// links are a worker's proxies to the masters, in the masters'
	// order: the worker reaches each master only through its link.
	links []*proxy.Proxy

	mu      sync.Mutex
	proc    *procs.Proc
	runs    []*procs.Proc
	held    bool
	stopped []int // process groups paused by a fault
}

// master is a master node with its address and its proxy to PostgreSQL.
type master struct {
	node
	addr  string
	proxy *proxy.Proxy
}

func (m *master) base() string { return "http://" + m.addr }

// current returns the node's running process, or nil.
func (n *node) current() *procs.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// allRuns returns every process the node ran, in order.
func (n *node) allRuns() []*procs.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*procs.Proc(nil), n.runs...)
}

// isHeld reports whether a fault is acting on the node.
func (n *node) isHeld() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.held
}

// start starts the node's process as a new run, for the test t.
func (n *node) start(t testing.TB) *procs.Proc {
	n.mu.Lock()
	spec := n.spec
	spec.Name = fmt.Sprintf("%s-run%d", n.name, len(n.runs)+1)
	n.mu.Unlock()
	p := procs.Start(t, spec)
	n.mu.Lock()
	n.proc = p
	n.runs = append(n.runs, p)
	n.mu.Unlock()
	return p
}

// startMaster starts a master and waits until it serves. A master killed
// a moment ago may still hold its name (until the supervisor sees its
// session end); the new process then exits saying so, and is started
// again.
func (m *master) startMaster(t testing.TB) error {
	deadline := time.Now().Add(startTimeout)
	for {
		p := m.start(t)
		_, err := p.WaitForLine("master started", startTimeout)
		if err == nil {
			return nil
		}
		if !strings.Contains(p.Stderr(), "master name in use") || time.Now().After(deadline) {
			_ = p.Kill()
			return fmt.Errorf("start %s: %w\n%s", m.name, err, tailLines(p.Stderr(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill kills the node's process and, for a worker, the process groups of
// the steps it runs, as when the machine under it dies.
func (n *node) kill() error {
	p := n.current()
	if p == nil {
		return nil
	}
	for _, g := range childGroups(p.PID()) {
		_ = syscall.Kill(-g, syscall.SIGKILL)
	}
	return p.Kill()
}

// terminate asks the node's process to stop with SIGTERM: a master
// drains, a worker stops its steps and reports them.
func (n *node) terminate() error {
	p := n.current()
	if p == nil {
		return nil
	}
	return p.Signal(syscall.SIGTERM)
}

// awaitExit waits up to timeout for the node's process to end after
// terminate, and kills it (and, for a worker, its steps) if it has not.
func (n *node) awaitExit(timeout time.Duration) error {
	p := n.current()
	if p == nil {
		return nil
	}
	if err := p.Wait(timeout); err == nil || p.Exited() {
		return nil
	}
	if err := n.kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", n.name, timeout)
}

// pause stops the node's process and its children's process groups with
// SIGSTOP, as when its machine hangs.
func (n *node) pause() error {
	p := n.current()
	if p == nil {
		return nil
	}
	groups := childGroups(p.PID())
	if err := p.Stop(); err != nil {
		return err
	}
	for _, g := range groups {
		_ = syscall.Kill(-g, syscall.SIGSTOP)
	}
	n.mu.Lock()
	n.stopped = groups
	n.mu.Unlock()
	return nil
}

// resume continues what pause stopped.
func (n *node) resume() error {
	n.mu.Lock()
	groups := n.stopped
	n.stopped = nil
	p := n.proc
	n.mu.Unlock()
	for _, g := range groups {
		_ = syscall.Kill(-g, syscall.SIGCONT)
	}
	if p == nil {
		return nil
	}
	return p.Cont()
}

// childGroups returns the process groups of pid's children that are not
// pid's own group: the steps a worker runs, each in a group of its own.
func childGroups(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	own := pgrp(pid)
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, group := statOf(child)
		if ppid == pid && group > 1 && group != own {
			out = append(out, group)
		}
	}
	return out
}

func pgrp(pid int) int {
	_, g := statOf(pid)
	return g
}

// statOf reads a process's parent and process group from /proc.
func statOf(pid int) (ppid, group int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	group, _ = strconv.Atoi(f[2])
	return ppid, group
}

// newMaster prepares master name on PostgreSQL at dbURL, through a proxy
// of its own.
func newMaster(t testing.TB, regent, name, dbURL, secrets string, extra []string) (*master, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, err
	}
	m := &master{addr: freeAddr(t), proxy: proxy.Start(t, u.Host)}
	u.Host = m.proxy.Addr()
	m.name = name
	m.spec = procs.Spec{Path: regent, Args: append([]string{"master", "--db", u.String(), "--name", name,
		"--listen", m.addr, "--data-dir", t.TempDir(), "--secrets-dir", secrets}, extra...)}
	return m, nil
}

// newWorker prepares worker name, talking to every master, each through
// a proxy of its own.
func newWorker(t testing.TB, regent, name, secrets string, masters []*master) *node {
	n := &node{name: name}
	var urls []string
	for _, m := range masters {
		link := proxy.Start(t, m.addr)
		n.links = append(n.links, link)
		urls = append(urls, "http://"+link.Addr())
	}
	n.spec = procs.Spec{Path: regent, Args: []string{"worker",
		"--master", strings.Join(urls, ","), "--name", name,
		"--password-file", filepath.Join(secrets, name), "--basedir", t.TempDir()}}
	return n
}

// freeAddr returns a loopback address with a port free at the time of the
// call.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
