package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// digest is a stand-in for the store's keyed password digest.
func digest(worker, password string) string {
	sum := sha256.Sum256([]byte("test key\x00" + worker + "\x00" + password))
	return hex.EncodeToString(sum[:])
}

// TestContentHash checks what the content hash depends on.
func TestContentHash(t *testing.T) {
	t.Parallel()
	base := prelude + `builder("b", [w1], [step.shell("make")], env = {"A": "1", "B": "2"})
`
	hash := func(t *testing.T, src string) string { return ContentHash(mustLoad(t, src), digest) }
	h := hash(t, base)
	tests := []struct {
		name string
		src  string
		same bool
	}{
		{"same text", base, true},
		{"comments and blank lines", "# header\n\n" + base + "# trailer\n", true},
		{"dict order", prelude + `builder("b", [w1], [step.shell("make")], env = {"B": "2", "A": "1"})` + "\n", true},
		{"declaration order", `w1 = worker("w1", "pw")
app = git_repo("app", "https://example.com/app.git")
builder("b", [w1], [step.shell("make")], env = {"A": "1", "B": "2"})
`, true},
		{"new password", `app = git_repo("app", "https://example.com/app.git")
w1 = worker("w1", "new")
builder("b", [w1], [step.shell("make")], env = {"A": "1", "B": "2"})
`, false},
		{"a step changed", prelude + `builder("b", [w1], [step.shell("make all")], env = {"A": "1", "B": "2"})` + "\n", false},
		{"an env value changed", prelude + `builder("b", [w1], [step.shell("make")], env = {"A": "1", "B": "3"})` + "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := hash(t, tt.src); (got == h) != tt.same {
				t.Errorf("hash equal = %v, want %v", got == h, tt.same)
			}
		})
	}
}

// TestContentHashSecretPassword checks that a password given literally or
// through a secret hashes alike when the value is the same, and that a
// change of the secret's value changes the hash.
func TestContentHashSecretPassword(t *testing.T) {
	t.Parallel()
	literal := mustLoad(t, `worker("w", "from-secret")`+"\n")
	secret := mustLoad(t, `worker("w", secret("worker-pw"))`+"\n")
	eq(t, ContentHash(literal, digest), ContentHash(secret, digest))
	rotated := *secret
	rotated.Workers = []Worker{secret.Workers[0]}
	rotated.Workers[0].Password = "rotated"
	if ContentHash(&rotated, digest) == ContentHash(secret, digest) {
		t.Fatal("a new password left the hash unchanged")
	}
	if ContentHash(&rotated, nil) != ContentHash(secret, nil) {
		t.Fatal("without a digest function the hash depends on passwords")
	}
}

// TestContentHashStoredState checks that a state read back from JSON, as
// the store keeps it, hashes like the state it came from, and pins the
// hash of a small state so that an accidental change of the canonical
// form, which would make every master see a new generation, fails here.
func TestContentHashStoredState(t *testing.T) {
	t.Parallel()
	st := mustLoad(t, prelude+`builder("b", [w1], [step.git(app), step.shell("make", env = {"A": "1"})], properties = {"n": 2})
scheduler.force("f", ["b"], parameters = [param.int("jobs", default = 2)])
lock("l")
`)
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var stored State
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	eq(t, ContentHash(&stored, nil), ContentHash(st, nil))
	eq(t, ContentHash(st, nil), "0bcaf0a30da36ed22189849fea5b957b6399ed5dd6797cfd46b320d57bf4e17d")
}
