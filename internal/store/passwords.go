package store

import (
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

// hashPasswords hashes the workers' passwords on all cores, sharing the
// bound on Argon2id computations with logins.
func hashPasswords(ws []config.Worker) map[string]string {
	out := make(map[string]string, len(ws))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		hashing <- struct{}{}
		go func() {
			defer wg.Done()
			h := hashPassword(w.Password)
			mu.Lock()
			out[w.Name] = h
			mu.Unlock()
			<-hashing
		}()
	}
	wg.Wait()
	return out
}
