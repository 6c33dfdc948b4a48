package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/regent-ci/regent/internal/schedule"
)

// uiAction wraps a form action of the UI. Forms are only accepted from
// pages of this same site, which is the UI's defence against cross-site
// request forgery, and they carry the admin token in a field when one is
// configured.
func (s *Server) uiAction(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			s.errorPage(w, r, http.StatusForbidden,
				"This form was not sent from a page of this site, so it was refused.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxActionBody)
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		if !s.tokenOK(r.PostForm.Get("token")) {
			s.errorPage(w, r, http.StatusUnauthorized,
				"This action needs the admin token, and the one given does not match.")
			return
		}
		h(w, r)
	}
}

// sameOrigin reports whether a browser sent the request from a page of
// this site. Browsers say so in Sec-Fetch-Site; older ones send Origin,
// or at least Referer, which must name this host. A request carrying
// none of them is refused.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	from := r.Header.Get("Origin")
	if from == "" || from == "null" {
		from = r.Header.Get("Referer")
	}
	if from == "" {
		return false
	}
	u, err := url.Parse(from)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) uiForce(w http.ResponseWriter, r *http.Request) {
	props, err := parseProperties(r.PostForm.Get("properties"))
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	// The typed fields of the force form. A bool sends a hidden "false"
	// and, when its box is checked, a "true" after it: the last wins.
	for key, vals := range r.PostForm {
		if name, ok := strings.CutPrefix(key, "param:"); ok && name != "" && len(vals) > 0 {
			props[name] = vals[len(vals)-1]
		}
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if reason == "" {
		reason = "forced from the web UI"
	}
	bs, err := s.force(r.Context(), r.PathValue("name"), reason, props)
	if errors.Is(err, schedule.ErrInvalidForce) {
		s.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.uiFail(w, r, "force build", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/buildsets/%d", bs.ID), http.StatusSeeOther)
}

// parseProperties reads the force form's properties: one NAME=VALUE a
// line, blank lines ignored.
func parseProperties(text string) (map[string]string, error) {
	props := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("properties line %d (%q) must read NAME=VALUE", i+1, line)
		}
		props[name] = value
	}
	return props, nil
}

func (s *Server) uiCancel(w http.ResponseWriter, r *http.Request) {
	id, ok := s.uiID(w, r, "id")
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if reason == "" {
		reason = "cancelled from the web UI"
	}
	if err := s.cancel(r.Context(), id, reason); err != nil {
		s.uiFail(w, r, "cancel build", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/builds/%d", id), http.StatusSeeOther)
}

func (s *Server) uiRebuild(w http.ResponseWriter, r *http.Request) {
	id, ok := s.uiID(w, r, "id")
	if !ok {
		return
	}
	bs, err := s.rebuild(r.Context(), id, "web UI")
	if err != nil {
		s.uiFail(w, r, "rebuild", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/buildsets/%d", bs.ID), http.StatusSeeOther)
}

func (s *Server) uiCancelRequest(w http.ResponseWriter, r *http.Request) {
	id, ok := s.uiID(w, r, "id")
	if !ok {
		return
	}
	req, err := s.requestByID(r, id)
	if err != nil {
		s.uiFail(w, r, "look up build request", err)
		return
	}
	if err := s.cancelRequestByID(r.Context(), id, "cancelled from the web UI"); err != nil {
		s.uiFail(w, r, "cancel build request", err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/buildsets/%d", req.BuildsetID), http.StatusSeeOther)
}
