package quietlog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestRepeatsAreLoggedOnce(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var r Repeats
	down := errors.New("connection refused")
	for range 5 {
		r.Error(log, "scheduling failed", down)
	}
	r.Error(log, "scheduling failed", errors.New("timeout"))
	r.Reset()
	r.Error(log, "scheduling failed", errors.New("timeout"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "connection refused") ||
		!strings.Contains(lines[1], "timeout") || !strings.Contains(lines[2], "timeout") {
		t.Fatalf("logged:\n%s\nwant the first refusal, the new error, and the error again after a reset", buf.String())
	}
}
