package config

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestEvaluatorDied checks how an evaluator that ended without answering
// is explained.
func TestEvaluatorDied(t *testing.T) {
	t.Parallel()
	exit := &exec.ExitError{}
	tests := []struct {
		name     string
		runErr   error
		deadline error
		stderr   string
		want     string
		config   bool // refused as a configuration error
	}{
		{"killed at the deadline", exit, context.DeadlineExceeded, "",
			"regent.star: evaluation stopped: the evaluator did not answer in time", true},
		{"out of memory", exit, nil, "fatal error: runtime: out of memory\n\ngoroutine 1...",
			"regent.star: evaluation stopped: the evaluator died: fatal error: runtime: out of memory", true},
		{"out of stack", exit, nil, "runtime: goroutine stack exceeds 1000000000-byte limit\nfatal error: stack overflow",
			"regent.star: evaluation stopped: the evaluator died: runtime: goroutine stack exceeds 1000000000-byte limit", true},
		{"something else", exit, nil, "exec format error",
			"evaluate configuration: the evaluator process failed", false},
	}
	for _, tt := range tests {
		err := evaluatorDied(tt.runErr, tt.deadline, tt.stderr)
		var errs Errors
		if !strings.HasPrefix(err.Error(), tt.want) || errors.As(err, &errs) != tt.config {
			t.Errorf("%s: got %v (configuration error %v), want %s", tt.name, err, errors.As(err, &errs), tt.want)
		}
	}
}

// TestIsolatedPrintAndSecrets checks that print() output and secrets cross
// the process boundary as they should: output comes back, secrets are
// resolved here.
func TestIsolatedPrintAndSecrets(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": `worker("w", secret("worker-pw"))
print("hello from", "the evaluator")
`})
	var got []string
	st, err := Load(context.Background(), dir, Options{Secrets: testSecrets, Print: func(p Pos, msg string) {
		got = append(got, p.String()+" "+msg)
	}})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, got, []string{"regent.star:2:1 hello from the evaluator"})
	eq(t, st.Workers[0].Password, "from-secret")
}
