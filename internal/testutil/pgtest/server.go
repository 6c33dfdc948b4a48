package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/testutil"
)

// Time limits for the server's life cycle. They are generous: the machine
// may be busy running other test packages.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
	killTimeout  = 10 * time.Second
)

// errPortInUse means the port picked for a new server was taken before the
// server could bind it; another port is tried.
var errPortInUse = errors.New("port already in use")

// Server is a throwaway PostgreSQL server living in a directory of its own,
// listening on a loopback port with trust authentication. Its methods are
// safe for concurrent use.
type Server struct {
	dir    string
	bindir string
	runAs  *syscall.Credential // nil unless the tests run as root
	detach bool                // survive this process (see StartDetached)

	// syncCommit makes a commit wait until its record reaches the
	// operating system, so that Crash loses no committed transaction.
	// Without fsync that costs one write per commit.
	syncCommit bool

	mu   sync.Mutex
	port int
	pm   *postmaster // nil while stopped
}

// postmaster is one run of the server's main process.
type postmaster = testutil.Child

// newServer makes a database cluster in dir (which must exist) and starts
// it on a free loopback port.
func newServer(dir string, detach, syncCommit bool) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bindir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	runAs, err := serverUser()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bindir: bindir, runAs: runAs, detach: detach, syncCommit: syncCommit}
	if err := s.prepareDir(); err != nil {
		return nil, err
	}
	if err := s.initdb(); err != nil {
		return nil, err
	}

	// A free port found now may be taken before the server binds it.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		err = s.Start()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 4 {
			return nil, err
		}
	}
}

// URL returns the URL of the server's "postgres" database as its superuser.
// It stays the same across restarts.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Port returns the loopback TCP port the server listens on.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir returns the directory holding the server's data, socket and log.
func (s *Server) Dir() string { return s.dir }

// LogPath returns the path of the server's log file.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "postgres.log") }

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pm != nil && !s.pm.Exited()
}

// Start starts the server if it is stopped and waits until it accepts
// connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pm != nil && !s.pm.Exited() {
		return nil
	}
	s.pm = nil

	logOffset := fileSize(s.LogPath())
	pm, err := s.launch()
	if err != nil {
		return err
	}
	if err := waitReady(s.urlLocked(), pm); err != nil {
		_ = stopPostmaster(pm, syscall.SIGQUIT)
		out := readFrom(s.LogPath(), logOffset)
		if strings.Contains(out, "Address already in use") {
			return fmt.Errorf("start PostgreSQL on port %d: %w", s.port, errPortInUse)
		}
		return fmt.Errorf("start PostgreSQL in %s: %w\n%s", s.dir, err, out)
	}
	s.pm = pm
	return nil
}

// Stop shuts the server down the way an operator would (a fast shutdown:
// sessions are ended, their transactions rolled back) and waits for it to
// exit. Stopping a stopped server does nothing.
func (s *Server) Stop() error { return s.shutdown(syscall.SIGINT) }

// Crash stops the server at once, with no shutdown checkpoint, the way a
// crash of the server would; clients see their connections fail. The next
// Start recovers from the write-ahead log. A server from [NewServer] loses
// no committed transaction; the shared server may lose the last few.
func (s *Server) Crash() error { return s.shutdown(syscall.SIGQUIT) }

// Restart stops the server and starts it again on the same port.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

func (s *Server) shutdown(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pm == nil {
		return nil
	}
	err := stopPostmaster(s.pm, sig)
	s.pm = nil
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w", s.dir, err)
	}
	return nil
}

func (s *Server) urlLocked() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// launch starts the postmaster process; it does not wait for readiness.
func (s *Server) launch() (*postmaster, error) {
	logFile, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL log: %w", err)
	}
	defer logFile.Close() // the child holds its own copy

	cmd := s.command("postgres",
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.socketDir(),
		"-c", "fsync=off",
		"-c", "synchronous_commit="+onOff(s.syncCommit),
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if s.detach {
		cmd.SysProcAttr.Setsid = true
		return startChild(cmd, 0)
	}
	// A test process that dies without cleaning up takes its server with
	// it. SIGQUIT makes the postmaster end its sessions too.
	return startChild(cmd, syscall.SIGQUIT)
}

func startChild(cmd *exec.Cmd, deathSignal syscall.Signal) (*postmaster, error) {
	pm, err := testutil.StartChild(cmd, deathSignal)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	return pm, nil
}

// waitReady polls the server until it accepts a connection, it exits, or
// readyTimeout passes.
func waitReady(url string, pm *postmaster) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			err = conn.Close(ctx)
			cancel()
			return err
		}
		cancel()
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %v: %w", readyTimeout, err)
		}
		select {
		case <-pm.Done():
			return errors.New("postgres exited during start")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopPostmaster signals the postmaster and waits for it to exit, killing
// it if it takes longer than stopTimeout.
func stopPostmaster(pm *postmaster, sig syscall.Signal) error {
	if pm.Exited() {
		return nil
	}
	if err := syscall.Kill(pm.PID(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal postgres (pid %d): %w", pm.PID(), err)
	}
	select {
	case <-pm.Done():
		return nil
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(pm.PID(), syscall.SIGKILL)
	select {
	case <-pm.Done():
		return fmt.Errorf("postgres (pid %d) ignored %v for %v and was killed", pm.PID(), sig, stopTimeout)
	case <-time.After(killTimeout):
		return fmt.Errorf("postgres (pid %d) survived SIGKILL", pm.PID())
	}
}

// initdb makes an empty database cluster whose superuser is "postgres",
// trusted on loopback.
func (s *Server) initdb() error {
	cmd := s.command("initdb",
		"-D", s.dataDir(),
		"-U", "postgres",
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
		"--no-instructions",
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb in %s: %w\n%s", s.dataDir(), err, out.String())
	}
	return nil
}

// command prepares one of the server's programs to run as the server's
// user, in the server's directory, with messages in English so that they
// can be recognised.
func (s *Server) command(program string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bindir, program), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C", "PGDATA=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.runAs}
	return cmd
}

func (s *Server) dataDir() string   { return filepath.Join(s.dir, "data") }
func (s *Server) socketDir() string { return filepath.Join(s.dir, "socket") }

// freePort asks the kernel for a loopback port nobody listens on.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}

// readFrom returns what a file holds past offset, for error messages.
func readFrom(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return ""
	}
	return string(data[offset:])
}

// tail returns at most the last n bytes of s, cut at a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
