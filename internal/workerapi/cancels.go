package workerapi

import (
	"sync"
	"time"
)

// cancelsSent remembers when this master last sent each cancel order, so
// that a poll whose only news would be orders sent moments ago is held
// instead of answered at once. It is memory only: another master, or this
// one after a restart, sends an order again once, which the worker ignores.
type cancelsSent struct {
	resend time.Duration

	mu   sync.Mutex
	sent map[int64]time.Time // by build id
}

func newCancelsSent(resend time.Duration) *cancelsSent {
	return &cancelsSent{resend: resend, sent: map[int64]time.Time{}}
}

// fresh reports whether orders holds a build whose cancel was not sent in
// the last resend period, and records that orders are being sent now.
// Entries of builds no longer cancelled are forgotten after a while, which
// keeps the map as small as the number of recent cancellations.
func (c *cancelsSent) fresh(orders []int64) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	news := false
	for _, id := range orders {
		if at, ok := c.sent[id]; !ok || now.Sub(at) >= c.resend {
			news = true
		}
	}
	if news {
		for _, id := range orders {
			c.sent[id] = now
		}
	}
	for id, at := range c.sent {
		if now.Sub(at) > 10*c.resend {
			delete(c.sent, id)
		}
	}
	return news
}
