package config

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirSecrets reads secrets from files.
func TestDirSecrets(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"plain":   "value",
		"newline": "value\n",
		"crlf":    "value\r\n",
		"two":     "value\n\n",
	})
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("leaked"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	p := DirSecrets(dir)
	tests := []struct {
		name, want string
		notFound   bool
	}{
		{name: "plain", want: "value"},
		{name: "newline", want: "value"},
		{name: "crlf", want: "value"},
		{name: "two", want: "value\n"},
		{name: "missing", notFound: true},
	}
	for _, tt := range tests {
		got, err := p.Secret(tt.name)
		if tt.notFound {
			if !errors.Is(err, ErrSecretNotFound) {
				t.Errorf("%s: got %q, %v; want ErrSecretNotFound", tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	for _, name := range []string{"../outside", "/etc/passwd", "link", ""} {
		if v, err := p.Secret(name); err == nil || strings.Contains(err.Error(), "leaked") {
			t.Errorf("Secret(%q) = %q, %v; want an error without the value", name, v, err)
		}
	}
}

// TestEnvSecrets reads secrets from the environment. It is not parallel:
// it sets environment variables.
func TestEnvSecrets(t *testing.T) {
	t.Setenv("REGENT_SECRET_GITHUB_TOKEN", "gh")
	t.Setenv("CUSTOM_DB_PASSWORD", "db")
	t.Setenv("PATH_SECRET", "should not be readable")
	v, err := EnvSecrets("").Secret("github-token")
	eq(t, v, "gh")
	eq(t, err, nil)
	v, err = EnvSecrets("CUSTOM_").Secret("db.password")
	eq(t, v, "db")
	eq(t, err, nil)
	if _, err := EnvSecrets("").Secret("nope"); !errors.Is(err, ErrSecretNotFound) {
		t.Errorf("got %v, want ErrSecretNotFound", err)
	}
	if _, err := EnvSecrets("").Secret("../PATH"); err == nil {
		t.Error("a malformed name was accepted")
	}
}

// failing is a provider that cannot be reached.
type failing struct{}

func (failing) Secret(string) (string, error) { return "", errors.New("vault unreachable") }

// TestChainSecrets asks providers in turn.
func TestChainSecrets(t *testing.T) {
	t.Parallel()
	chain := ChainSecrets(MapSecrets{"a": "first"}, MapSecrets{"a": "second", "b": "b"})
	for name, want := range map[string]string{"a": "first", "b": "b"} {
		if got, err := chain.Secret(name); err != nil || got != want {
			t.Errorf("Secret(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := chain.Secret("c"); !errors.Is(err, ErrSecretNotFound) {
		t.Errorf("got %v, want ErrSecretNotFound", err)
	}
	_, err := ChainSecrets(MapSecrets{}, failing{}, MapSecrets{"c": "c"}).Secret("c")
	if err == nil || errors.Is(err, ErrSecretNotFound) {
		t.Errorf("got %v, want the failing provider's error", err)
	}
}

// TestSecretsInLoad resolves worker passwords from a directory and keeps
// step secrets as references: their values appear nowhere in the state.
func TestSecretsInLoad(t *testing.T) {
	t.Parallel()
	secrets := writeFiles(t, map[string]string{"w-pw": "hunter2\n", "deploy-token": "tok-123\n"})
	dir := writeFiles(t, map[string]string{"regent.star": `worker("w", secret("w-pw"))
builder("b", ["w"], [step.shell("deploy", env = {"TOKEN": secret("deploy-token")})],
    env = {"ALSO": secret("deploy-token")})
`})
	st, err := Load(context.Background(), dir, Options{Secrets: DirSecrets(secrets)})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, st.Workers[0].Password, "hunter2")
	eq(t, st.Builders[0].Steps[0].SecretEnv, map[string]string{"TOKEN": "deploy-token"})
	eq(t, st.Builders[0].SecretEnv, map[string]string{"ALSO": "deploy-token"})
	raw, _ := json.Marshal(st)
	for _, value := range []string{"hunter2", "tok-123"} {
		if strings.Contains(string(raw), value) {
			t.Errorf("the state holds the secret value %q: %s", value, raw)
		}
	}
}

// TestSecretValuesNotInErrors refuses a configuration using secrets and
// checks that no value is printed.
func TestSecretValuesNotInErrors(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": `worker("w", secret("pw"))
worker("w", secret("pw"))
builder("b", ["w", "x"], [step.shell("echo", env = {"T": secret("pw")})])
`})
	_, err := Load(context.Background(), dir, Options{Secrets: MapSecrets{"pw": "s3cr3t-value"}})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-value") {
		t.Fatalf("got %v, want errors without the secret value", err)
	}
}
