package cluster

import "sync"

// Wake is a broadcast signal: every goroutine waiting on C when Notify is
// called wakes up. A waiter that was not waiting misses the signal, so
// waiters always re-check the state they wait on after waking.
type Wake struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewWake returns a signal with no waiters.
func NewWake() *Wake { return &Wake{ch: make(chan struct{})} }

// C returns a channel closed at the next Notify.
func (w *Wake) C() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// Notify wakes every current waiter.
func (w *Wake) Notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.ch)
	w.ch = make(chan struct{})
}
