package store

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"syscall"
)

// nameLocks are the lock files by which masters on one SQLite database
// claim their names. The kernel drops a process's locks when it dies, so a
// lock that can be taken proves that no live process holds the name, as a
// free session lock proves it on PostgreSQL. Locks are held until the
// store is closed; a master rejoining in the same process keeps its own.
type nameLocks struct {
	mu    sync.Mutex
	files map[string]*os.File
}

// lock takes the lock of name for the database at dbPath without waiting.
// It reports whether this store now holds it (false if another process
// does) and whether it was just taken: only then are all earlier holders
// known to have ended, since a lock this store already held may belong to
// another master of this process.
func (n *nameLocks) lock(dbPath, name string) (held, fresh bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.files[name]; ok {
		return true, false, nil
	}
	dir := dbPath + ".masters"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, false, fmt.Errorf("create master lock directory: %w", err)
	}
	f, err := os.OpenFile(dir+"/"+url.PathEscape(name)+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return false, false, fmt.Errorf("open master lock: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return false, false, nil
	}
	if err != nil {
		f.Close()
		return false, false, fmt.Errorf("lock master name: %w", err)
	}
	if n.files == nil {
		n.files = map[string]*os.File{}
	}
	n.files[name] = f
	return true, true, nil
}

// releaseAll drops every lock this store holds.
func (n *nameLocks) releaseAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, f := range n.files {
		f.Close()
		delete(n.files, name)
	}
}
