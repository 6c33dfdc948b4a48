package master

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/store"
)

// The cluster lists take include=ended and include=retired, and refuse any
// other value with 400 rather than silently listing without it.
func TestClusterListsCheckInclude(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "regent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mux := http.NewServeMux()
	clusterAPI{store: st, log: slog.New(slog.NewTextHandler(io.Discard, nil))}.register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for path, want := range map[string]int{
		"/api/v1/masters":                  200,
		"/api/v1/masters?include=ended":    200,
		"/api/v1/masters?include=retired":  400,
		"/api/v1/services":                 200,
		"/api/v1/services?include=retired": 200,
		"/api/v1/services?include=all":     400,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d %s, want %d", path, resp.StatusCode, body, want)
		}
		if want == 400 && !strings.Contains(string(body), "include must be") {
			t.Errorf("GET %s: %s does not say what include takes", path, body)
		}
	}
}
