package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/store"
)

// session is an incarnation's own connection to PostgreSQL. It holds the
// incarnation's session lock for as long as it lives, so that the
// supervisor sees a crash at once, and listens for notifications, which it
// turns into wake-ups.
type session struct {
	conn  *pgx.Conn
	wakes map[string]*Wake
	// lost receives the error that ended the connection.
	lost chan error
	// services is signalled when services may have changed owner.
	services chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// openSession connects, takes the session lock of incarnation id and
// listens on the notification channel. The lock is taken before the
// incarnation's row exists, so a row whose lock is free is always a
// master whose session ended.
func openSession(ctx context.Context, st *store.Store, id int64, wakes map[string]*Wake) (*session, error) {
	conn, err := st.SessionConn(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn, wakes: wakes, lost: make(chan error, 1),
		services: make(chan struct{}, 1)}
	var locked bool
	err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`,
		int32(store.SessionLockClass), store.SessionLockKey(id)).Scan(&locked)
	if err == nil && !locked {
		err = fmt.Errorf("session lock of incarnation %d is held by another session", id)
	}
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+store.NotifyChannel)
	}
	if err != nil {
		s.closeConn()
		return nil, fmt.Errorf("open database session: %w", err)
	}
	return s, nil
}

// start begins listening for notifications until close.
func (s *session) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.listen(ctx)
}

// listen hands each notification to its wake-up until ctx ends or the
// connection fails, which it reports on lost.
func (s *session) listen(ctx context.Context) {
	defer close(s.done)
	for {
		n, err := s.conn.WaitForNotification(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.lost <- err // the only send: buffered, never blocks
			return
		}
		if w := s.wakes[n.Payload]; w != nil {
			w.Notify()
		}
		if n.Payload == store.TopicService {
			// A pending signal already covers this one.
			select {
			case s.services <- struct{}{}:
			default:
			}
		}
	}
}

// close stops listening and ends the connection, which releases the
// session lock. It is safe on a nil session.
func (s *session) close() {
	if s == nil {
		return
	}
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.closeConn()
}

// closeConn ends the connection. An error means it was broken already,
// which ends the session as surely.
func (s *session) closeConn() {
	// A connection cut off answers nothing: do not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
}
