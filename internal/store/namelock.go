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
// It reports false if another process holds it.
func (n *nameLocks) lock(dbPath, name string) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.files[name]; ok {
		return true, nil
	}
	dir := dbPath + ".masters"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create master lock directory: %w", err)
	}
	f, err := os.OpenFile(dir+"/"+url.PathEscape(name)+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return false, fmt.Errorf("open master lock: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return false, nil
	}
	if err != nil {
		f.Close()
		return false, fmt.Errorf("lock master name: %w", err)
	}
	if n.files == nil {
		n.files = map[string]*os.File{}
	}
	n.files[name] = f
	return true, nil
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
