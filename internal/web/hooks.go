package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/regent-ci/regent/internal/changes"
)

// maxHookBody bounds the body of a webhook delivery. Forges cap theirs
// lower (GitHub at 25 MB drops the payload; pushes are far smaller).
const maxHookBody = 5 << 20

// receiver returns a webhook receiver on the server's store and secrets.
// It holds no state, so one per delivery costs nothing.
func (s *Server) receiver() (*changes.Receiver, error) {
	return changes.NewReceiver(changes.ReceiverConfig{Store: s.cfg.Store, Secrets: s.cfg.Secrets,
		Logger: s.cfg.Logger})
}

// hook answers POST /api/v1/hooks/{source}. Webhooks do not take the
// admin token: each delivery is verified with the webhook secret of the
// repository it names. A refused delivery is logged with what identifies
// it, never with its signature.
func (s *Server) hook(source string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.log.Warn("webhook refused: too large", "source", source, "remote", r.RemoteAddr,
				"limit", maxHookBody)
			writeError(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("a webhook delivery may hold at most %d bytes", maxHookBody))
			return
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "read webhook delivery: "+err.Error())
			return
		}
		rcv, err := s.receiver()
		if err != nil {
			s.fail(w, r, "receive webhook", err)
			return
		}
		rc, err := rcv.Receive(r.Context(), source, r.Header, body)
		if err == nil {
			writeJSON(w, http.StatusOK, rc)
			return
		}
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, changes.ErrUnauthorized):
			status = http.StatusUnauthorized
		case errors.Is(err, changes.ErrUnknownRepository):
			status = http.StatusNotFound
		case errors.Is(err, changes.ErrBadDelivery):
			status = http.StatusBadRequest
		default:
			s.fail(w, r, "record webhook delivery", err)
			return
		}
		s.log.Warn("webhook refused", "source", source, "remote", r.RemoteAddr, "status", status,
			"delivery", deliveryID(r), "err", err)
		writeError(w, status, err.Error())
	}
}

// deliveryID returns the delivery id a forge sent, for logs.
func deliveryID(r *http.Request) string {
	for _, h := range []string{"X-GitHub-Delivery", "X-Gitea-Delivery", "X-Forgejo-Delivery",
		"Idempotency-Key", "X-Gitlab-Event-UUID", "X-Regent-Delivery"} {
		if v := r.Header.Get(h); v != "" {
			return v
		}
	}
	return ""
}
