package workerapi

import (
	"net/http"

	"github.com/regent-ci/regent/internal/store"
)

// acquireLocks answers a step's request for the locks it names: granted,
// or the name of a lock it waits for, in which case the worker asks again.
func (s *Server) acquireLocks(w http.ResponseWriter, r *http.Request, sess store.Session) {
	id, n, err := pathIDs(r)
	var body AttemptRequest
	if err == nil {
		err = decode(r, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	got, err := s.cfg.Store.AcquireStepLocks(r.Context(), id, body.AttemptToken, n)
	if err == nil && got.Acquired {
		s.log.Debug("step locks acquired", "build", id, "step", n, "worker", sess.WorkerName)
	}
	s.answer(w, err, LockGrant{Acquired: got.Acquired, Waiting: got.Waiting})
}

// releaseLocks gives back a step's locks as soon as the step has ended.
func (s *Server) releaseLocks(w http.ResponseWriter, r *http.Request, _ store.Session) {
	id, n, err := pathIDs(r)
	var body AttemptRequest
	if err == nil {
		err = decode(r, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err = s.cfg.Store.ReleaseStepLocks(r.Context(), id, body.AttemptToken, n)
	if err == nil {
		s.cfg.Wake.Notify() // requests waiting for the locks may go now
	}
	s.answer(w, err, struct{}{})
}
