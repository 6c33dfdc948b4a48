package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"

	"github.com/regent-ci/regent/internal/config"
)

// Argon2id parameters for worker passwords. Workers log in once per
// session, so a few milliseconds per check is affordable.
const (
	argonTime    = 1
	argonMemory  = 8 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// hashPassword returns a salted Argon2id hash in a self-describing form.
func hashPassword(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(fmt.Sprintf("read random salt: %v", err))
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("argon2id$%d$%d$%d$%s$%s", argonTime, argonMemory, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key))
}

// hashing admits as many Argon2id computations at once as there are
// CPUs. Each takes argonMemory; without a bound, hundreds of workers
// logging in together after a master restart would take that much each.
var hashing = make(chan struct{}, runtime.NumCPU())

// checkPassword reports whether password matches a hash from hashPassword.
func checkPassword(hash, password string) bool {
	hashing <- struct{}{}
	defer func() { <-hashing }()
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "argon2id" {
		return false
	}
	var t, m uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[1]+" "+parts[2]+" "+parts[3], "%d %d %d", &t, &m, &p); err != nil {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// hashJob hashes a set of workers' passwords in the background, on all
// cores, sharing the bound on Argon2id computations with logins, so that
// the caller can prepare the rest of an apply meanwhile.
type hashJob struct {
	done   chan struct{}
	hashes map[string]string // by worker name; written only before done closes
	err    error
}

// startHashing starts hashing the passwords of ws and returns at once.
// The caller must call wait, which returns only once no hash is running.
// Cancelling ctx stops the hashes not yet begun.
func startHashing(ctx context.Context, ws []config.Worker) *hashJob {
	j := &hashJob{done: make(chan struct{}), hashes: make(map[string]string, len(ws))}
	go j.run(ctx, ws)
	return j
}

func (j *hashJob) run(ctx context.Context, ws []config.Worker) {
	defer close(j.done)
	var mu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, w := range ws {
		if err := acquireHashing(ctx); err != nil {
			j.err = fmt.Errorf("hash worker passwords: %w", err)
			return
		}
		wg.Go(func() {
			defer func() { <-hashing }()
			h := hashPassword(w.Password)
			mu.Lock()
			j.hashes[w.Name] = h
			mu.Unlock()
		})
	}
}

// acquireHashing takes a place among the Argon2id computations, unless
// ctx ends first.
func acquireHashing(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns the hashes by worker name once all are computed.
func (j *hashJob) wait() (map[string]string, error) {
	<-j.done
	return j.hashes, j.err
}

// hashPasswords hashes the workers' passwords on all cores and returns
// the hashes by worker name.
func hashPasswords(ctx context.Context, ws []config.Worker) (map[string]string, error) {
	return startHashing(ctx, ws).wait()
}
