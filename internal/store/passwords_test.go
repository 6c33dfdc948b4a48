package store

import (
	"context"
	"errors"
	"testing"

	"github.com/regent-ci/regent/internal/config"
)

func TestHashedPasswordsCheckAndDiffer(t *testing.T) {
	t.Parallel()
	ws := []config.Worker{{Name: "a", Password: "same"}, {Name: "b", Password: "same"}, {Name: "c", Password: "other"}}
	hashes, err := hashPasswords(context.Background(), ws)
	if err != nil || len(hashes) != len(ws) {
		t.Fatalf("%d hashes (%v), want %d", len(hashes), err, len(ws))
	}
	for _, w := range ws {
		if !checkPassword(hashes[w.Name], w.Password) {
			t.Errorf("the hash of %s does not check its password", w.Name)
		}
		if checkPassword(hashes[w.Name], w.Password+"x") {
			t.Errorf("the hash of %s checks a wrong password", w.Name)
		}
	}
	if hashes["a"] == hashes["b"] {
		t.Error("two workers with one password got the same hash: the salt must differ")
	}
}

func TestHashingStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	hashes, err := hashPasswords(ctx, []config.Worker{{Name: "a", Password: "p"}, {Name: "b", Password: "q"}})
	if !errors.Is(err, context.Canceled) || len(hashes) != 0 {
		t.Fatalf("%d hashes, error %v; want none and context.Canceled", len(hashes), err)
	}
}
