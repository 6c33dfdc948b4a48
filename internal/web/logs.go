package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/store"
)

// stepLog serves the raw bytes of a step's log exactly as stored, from
// ?offset= (default 0). With ?follow=1 the answer stays open and carries
// new bytes as they are stored, until the step finishes.
func (s *Server) stepLog(w http.ResponseWriter, r *http.Request) {
	st, ok := s.stepOf(w, r)
	if !ok {
		return
	}
	var offset int64
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("offset must be a byte offset, not %q", v))
			return
		}
		offset = n
	}
	var follow bool
	if v := r.URL.Query().Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("follow must be 1 or 0, not %q", v))
			return
		}
		follow = f
	}

	// The log's bytes are whatever the step printed; no charset is claimed
	// for them, and browsers must not guess a type either.
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if !follow {
		s.writeLogOnce(w, r, st, offset)
		return
	}
	s.followLog(w, r, st, offset)
}

// writeLogOnce answers the bytes stored so far from offset on.
func (s *Server) writeLogOnce(w http.ResponseWriter, r *http.Request, st store.Step, offset int64) {
	size := st.LogSize
	w.Header().Set("X-Log-Size", strconv.FormatInt(size, 10))
	if offset >= size {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size-offset, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := s.cfg.Store.WriteLog(r.Context(), w, st.BuildID, st.Number, offset, size); err != nil &&
		r.Context().Err() == nil {
		// The status is sent; the short body tells the client.
		s.log.Error("serve step log failed", "build", st.BuildID, "step", st.Number, "err", err)
	}
}

// followLog streams the log from offset, looking for new bytes every
// LogPoll until the step has finished and every byte was sent. A step is
// only marked finished once all its bytes are stored, so nothing is lost
// at the end. Once the server is closed, it ends after sending what is
// stored.
func (s *Server) followLog(w http.ResponseWriter, r *http.Request, st store.Step, offset int64) {
	ctx := r.Context()
	wait, cancel := s.streamContext(r)
	defer cancel()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a followed log may stay open for hours
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	pos := offset
	for {
		if st.LogSize > pos {
			n, err := s.cfg.Store.WriteLog(ctx, w, st.BuildID, st.Number, pos, st.LogSize)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("follow step log stopped", "build", st.BuildID, "step", st.Number, "err", err)
				}
				return
			}
			pos = n
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if st.State == build.StateFinished && pos >= st.LogSize {
			return
		}
		if !sleep(wait, s.cfg.LogPoll) {
			return
		}
		next, err := s.cfg.Store.StepByNumber(ctx, st.BuildID, st.Number)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("follow step log stopped", "build", st.BuildID, "step", st.Number, "err", err)
			}
			return
		}
		st = next
	}
}

// sleep waits for d or until ctx ends, and reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
