// Package quietlog logs a failure that repeats, such as every round of a
// loop while the database is down, once rather than every round: the first
// occurrence at once, then a summary with the count when it changes or
// once a minute. slog has no such filter of its own.
package quietlog

import (
	"log/slog"
	"sync"
	"time"
)

// every is how often a failure that keeps repeating is logged again.
const every = time.Minute

// Repeats remembers the last failure of one loop.
type Repeats struct {
	mu       sync.Mutex
	last     string
	loggedAt time.Time
	repeats  int
}

// Error logs msg with err at error level, unless err repeats the last
// error logged less than a minute ago; a repeat logged later says how many
// times it came meanwhile.
func (r *Repeats) Error(log *slog.Logger, msg string, err error, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	text := msg + ": " + err.Error()
	if text == r.last && now.Sub(r.loggedAt) < every {
		r.repeats++
		return
	}
	if text == r.last && r.repeats > 0 {
		args = append(args, "repeated", r.repeats)
	}
	log.Error(msg, append(args, "err", err)...)
	r.last, r.loggedAt, r.repeats = text, now, 0
}

// Reset forgets the last failure, after a success: the next failure is
// logged at once.
func (r *Repeats) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.repeats = "", 0
}
