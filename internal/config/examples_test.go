package config

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden states of testdata/examples")

// exampleSecrets are the secrets the examples use.
var exampleSecrets = MapSecrets{
	"codecov-token": "c", "linux-password": "l", "signing-key": "s", "worker-password": "w",
	"app-webhook": "h", "git-token": "t",
}

// TestExamples evaluates each example configuration of testdata/examples
// and compares its state with the golden state.json beside it (rewritten
// by go test -update).
func TestExamples(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob("testdata/examples/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			st, err := Load(context.Background(), dir, Options{Secrets: exampleSecrets})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := filepath.Join(dir, "state.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("state of %s differs from %s; run go test -update and review the change:\n%s",
					dir, golden, got)
			}
		})
	}
}
