package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/regent-ci/regent/internal/config"
)

// BenchmarkHashPasswords measures hashing the passwords of the 200 workers
// of BenchmarkApply's configuration on all cores: the part of its first
// apply that is slow by design, beside which the database work is small.
func BenchmarkHashPasswords(b *testing.B) {
	ws := make([]config.Worker, 200)
	for i := range ws {
		ws[i] = config.Worker{Name: fmt.Sprintf("w%03d", i), Password: fmt.Sprintf("pw-%03d", i)}
	}
	for b.Loop() {
		hashes, err := hashPasswords(context.Background(), ws)
		if err != nil || len(hashes) != len(ws) {
			b.Fatalf("%d hashes (%v), want %d", len(hashes), err, len(ws))
		}
	}
}
