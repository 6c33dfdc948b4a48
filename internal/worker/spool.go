package worker

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// spool is the on-disk copy of one step's output. The step writes to it
// as output comes; the reporter reads from it at the offset the master
// acknowledged. Because every byte lands on disk first, output produced
// while no master answers is delivered later, and a resend after a lost
// answer reads exactly the bytes sent before.
//
// The spool holds at most limit bytes of output. The first write past
// the limit appends a marker line saying so; later output is read and
// discarded, so the step keeps running and is not blocked on a full pipe.
type spool struct {
	f     *os.File
	path  string
	limit int64
	log   *slog.Logger

	mu        sync.Mutex
	size      int64 // bytes in the file, marker included
	last      byte  // last byte written, to start the marker on a new line
	truncated bool
	broken    bool // a write failed; later output is discarded
	closed    bool
	// mask, when set, hides secret values before output is stored.
	mask   *masker
	active time.Time     // when output last arrived
	notify chan struct{} // capacity 1: the reporter has something to do
}

func newSpool(path string, limit int64, log *slog.Logger) (*spool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create log spool: %w", err)
	}
	return &spool{
		f:      f,
		path:   path,
		limit:  limit,
		log:    log,
		active: time.Now(),
		notify: make(chan struct{}, 1),
	}, nil
}

// maskSecrets makes the spool replace each of values in the output with
// "***" before storing it; empty values are ignored.
func (s *spool) maskSecrets(values []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mask = newMasker(values, s.store)
}

// Write stores p, or the part of it that fits below the limit, with
// secret values masked. It never fails: output that cannot be kept is
// dropped, so that the step is never stopped by its log.
func (s *spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = time.Now()
	if len(p) == 0 || s.closed {
		return len(p), nil
	}
	if s.mask != nil {
		s.mask.write(p)
	} else {
		s.store(p)
	}
	return len(p), nil
}

// store appends p below the limit, then the truncation marker when p
// reaches it; s.mu is held.
func (s *spool) store(p []byte) {
	if s.truncated || s.broken {
		return
	}

	keep := p
	if room := s.limit - s.size; int64(len(keep)) > room {
		keep = keep[:room]
	}
	s.append(keep)
	if len(keep) < len(p) && !s.broken {
		s.truncated = true
		marker := fmt.Sprintf("[regent: output truncated: the step printed more than "+
			"the log limit of %d bytes per step; the rest was discarded while the step ran on]\n",
			s.limit)
		if s.size > 0 && s.last != '\n' {
			marker = "\n" + marker
		}
		s.append([]byte(marker))
	}
	s.wake()
}

// append writes b at the end of the file; s.mu is held.
func (s *spool) append(b []byte) {
	if len(b) == 0 {
		return
	}
	n, err := s.f.WriteAt(b, s.size)
	s.size += int64(n)
	if n > 0 {
		s.last = b[n-1]
	}
	if err != nil {
		// Keeping what was written makes the log a true prefix of the
		// output; nothing after a hole is stored.
		s.broken = true
		s.log.Error("cannot write step output to the spool; discarding the rest",
			"path", s.path, "err", err)
	}
}

// wake tells the reporter there is news without ever blocking the step.
func (s *spool) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// lastActive returns when output last arrived.
func (s *spool) lastActive() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// state returns the stored size and whether the step has finished writing.
func (s *spool) state() (size int64, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, s.closed
}

// close stores what the masker held back and marks the output complete;
// the file stays readable.
func (s *spool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mask != nil && !s.closed {
		s.mask.flush()
	}
	s.closed = true
	s.wake()
}

// readAt reads stored bytes at off.
func (s *spool) readAt(p []byte, off int64) (int, error) {
	return s.f.ReadAt(p, off)
}

// remove closes and deletes the file once the master holds it all or the
// build is abandoned; output still coming from a dying step is dropped.
func (s *spool) remove() {
	s.mu.Lock()
	s.closed = true
	s.f.Close()
	s.mu.Unlock()
	if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
		s.log.Warn("cannot remove log spool", "path", s.path, "err", err)
	}
}
