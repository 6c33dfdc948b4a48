package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultBinDir is where Debian's postgresql-15 package puts the server.
const defaultBinDir = "/usr/lib/postgresql/15/bin"

// serverUserName is the account the server runs as when the tests run as
// root, which PostgreSQL refuses.
const serverUserName = "postgres"

// findBinDir returns the directory holding initdb and postgres: Debian's
// PostgreSQL 15 if present, else whatever pg_config names.
func findBinDir() (string, error) {
	candidates := []string{defaultBinDir}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, postgres) in %s: "+
		"install postgresql-15, or set %s to the URL of a server", strings.Join(candidates, " or "), envURL)
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// serverUser returns the credentials to run the server with: none (the
// current user) normally, the postgres account when running as root.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	return lookupCredential(serverUserName)
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged %q account to run as, "+
			"and looking it up failed: %w (the postgresql-15 package creates it; "+
			"or: useradd --system --home-dir /var/lib/postgresql %s)", name, err, name)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s has uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s has gid %q: %w", name, u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDir makes the server's data and socket directories inside s.dir,
// owned by the server's user, after checking that user can reach them.
func (s *Server) prepareDir() error {
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return fmt.Errorf("prepare PostgreSQL directory: %w", err)
	}
	if s.runAs != nil {
		if err := checkReachable(s.dir, s.runAs.Uid); err != nil {
			return err
		}
	}
	for _, dir := range []string{s.dataDir(), s.socketDir()} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("prepare PostgreSQL directory: %w", err)
		}
		if s.runAs != nil {
			if err := os.Chown(dir, int(s.runAs.Uid), int(s.runAs.Gid)); err != nil {
				return fmt.Errorf("prepare PostgreSQL directory: %w", err)
			}
		}
	}
	return nil
}

// checkReachable makes sure that user uid may enter every directory above
// dir, so that a server running as that user can reach its files.
func checkReachable(dir string, uid uint32) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check PostgreSQL directory: %w", err)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm()&0o001 == 0 && !(ok && st.Uid == uid) {
			return fmt.Errorf("the %s user cannot enter %s (mode %v), so it cannot reach %s: "+
				"put PostgreSQL's directory somewhere every user may enter, such as /tmp",
				serverUserName, p, info.Mode().Perm(), dir)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// StartDetached makes a database cluster in dir, an existing empty
// directory, starts a server on it that outlives the calling process, and
// returns the server's admin URL. [StopDetached] stops it. This is how one
// server is shared by every test package of a make test run.
func StartDetached(dir string) (string, error) {
	s, err := newServer(dir, true, false)
	if err != nil {
		return "", err
	}
	return s.URL(), nil
}

// StopDetached stops the server that [StartDetached] started in dir and
// waits for it to exit. It does nothing if the server is not running.
func StopDetached(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(dir, "data", "postmaster.pid")
	pid, err := readPID(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !isOurPostmaster(pid, filepath.Join(dir, "data")) {
		return nil // a stale lock file: the server is already gone
	}

	if err := syscall.Kill(pid, syscall.SIGINT); errors.Is(err, syscall.ESRCH) {
		return nil
	} else if err != nil {
		return fmt.Errorf("signal postgres (pid %d): %w", pid, err)
	}
	if waitGone(pid, pidFile, stopTimeout) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, pidFile, killTimeout) {
		return fmt.Errorf("postgres (pid %d) ignored SIGINT for %v and was killed", pid, stopTimeout)
	}
	return fmt.Errorf("postgres (pid %d) survived SIGKILL", pid)
}

// readPID reads the postmaster's process id from the first line of its
// lock file.
func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read %s: no process id in %q", path, first)
	}
	return pid, nil
}

// isOurPostmaster reports whether process pid is a postgres serving
// dataDir, so that a stale lock file never leads to signalling a stranger
// that reused the process id.
func isOurPostmaster(pid int, dataDir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "postgres" {
		return false
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-D" && args[i+1] == dataDir {
			return true
		}
	}
	return false
}

// waitGone polls until the postmaster has removed its lock file or exited
// (a zombie counts: a detached server's parent may never reap it).
func waitGone(pid int, pidFile string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(pidFile); errors.Is(err, os.ErrNotExist) {
			return true
		}
		if !processLive(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// processLive reports whether pid names a process that has not yet exited.
func processLive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces or parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] != 'Z'
}
