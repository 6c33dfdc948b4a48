package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one template set per page, each the layout plus the page's
// own "content" and, for pages that refresh, "live" templates.
type pages struct {
	sets map[string]*template.Template
}

// loadPages parses the embedded templates.
func loadPages() (*pages, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		p.sets[base] = t
	}
	return p, nil
}

// view is what every page template receives.
type view struct {
	Title   string
	Master  string
	Version string
	Notices []string
	// Retired says whether retired entities are shown; ToggleRetired is
	// the URL that flips it.
	Retired       bool
	ToggleRetired string
	// NeedToken says that action forms must carry the admin token.
	NeedToken bool
	Data      any
}

// render answers a page. With ?fragment=1 only the page's "live"
// template is rendered, which is what the page's script fetches to
// refresh itself.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	set, ok := s.pages.sets[page]
	if !ok {
		panic("web: no template for page " + page)
	}
	v := view{
		Title: title, Master: s.cfg.Master, Version: s.cfg.Version,
		Retired: includeRetired(r), ToggleRetired: toggleRetired(r.URL),
		NeedToken: s.cfg.AdminToken != "", Data: data,
	}
	if s.cfg.ExtraStatus != nil {
		v.Notices = s.cfg.ExtraStatus(r.Context())
	}
	tmpl := "layout"
	if r.URL.Query().Get("fragment") == "1" && set.Lookup("live") != nil {
		tmpl = "live"
	}
	var buf bytes.Buffer
	if err := set.ExecuteTemplate(&buf, tmpl, v); err != nil {
		s.log.Error("render page failed", "page", page, "err", err)
		http.Error(w, "rendering the page failed; the master's log has the details",
			http.StatusInternalServerError)
		return
	}
	setPageHeaders(w)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// setPageHeaders sets the headers every UI page carries: no inline
// scripts or styles, no framing, no resources from other origins.
func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "+
		"frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// toggleRetired returns u with ?include=retired flipped.
func toggleRetired(u *url.URL) string {
	q := u.Query()
	if q.Get("include") == "retired" {
		q.Del("include")
	} else {
		q.Set("include", "retired")
	}
	q.Del("before")
	q.Del("fragment")
	if len(q) == 0 {
		return u.Path
	}
	return u.Path + "?" + q.Encode()
}

var funcs = template.FuncMap{
	"when":      when,
	"duration":  duration,
	"status":    status,
	"deref":     deref,
	"short":     short,
	"firstLine": firstLine,
	"bytes":     humanBytes,
	"join":      strings.Join,
}

// when formats a time, or a pointer to one, for people; nil and the zero
// time are shown as a dash.
func when(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// duration formats the time between start and end, or until now when end
// is nil.
func duration(start, end *time.Time) string {
	if start == nil {
		return "—"
	}
	stop := time.Now()
	if end != nil {
		stop = *end
	}
	d := stop.Sub(*start).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}

// status names the state or result to show for a build or step, and its
// CSS class.
func status(state string, result *string) map[string]string {
	if state == build.StateFinished && result != nil {
		return map[string]string{"text": *result, "class": "r-" + *result}
	}
	return map[string]string{"text": state, "class": "s-" + state}
}

// deref shows a pointer's value, or a dash for nil.
func deref(v any) string {
	switch x := v.(type) {
	case *string:
		if x != nil {
			return *x
		}
	case *int64:
		if x != nil {
			return fmt.Sprint(*x)
		}
	}
	return "—"
}

// short cuts a revision to twelve characters.
func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// firstLine returns the first line of a commit message.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// humanBytes formats a size in bytes.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// staticHandler serves the embedded assets under /static/.
func staticHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
}
