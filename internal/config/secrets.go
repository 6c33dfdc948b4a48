package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// SecretProvider resolves secret("name") references. Secret returns
// [ErrSecretNotFound], possibly wrapped, when it does not hold the secret.
// Errors must never contain a secret's value.
type SecretProvider interface {
	Secret(name string) (string, error)
}

// DirSecrets returns a provider reading each secret from the file of the
// same name in dir, without one trailing newline. Names are checked, so a
// secret cannot name a file outside dir, and links leading outside dir are
// not followed.
func DirSecrets(dir string) SecretProvider { return dirSecrets(dir) }

type dirSecrets string

func (d dirSecrets) Secret(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("secret %w", err)
	}
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return "", fmt.Errorf("open secrets directory: %w", err)
	}
	defer root.Close()
	b, err := root.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no file %s in the secrets directory: %w", name, ErrSecretNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read secret file %s: %w", name, err)
	}
	s := string(b)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	return s, nil
}

// DefaultEnvPrefix is the prefix of the environment variables EnvSecrets
// reads when given no prefix.
const DefaultEnvPrefix = "REGENT_SECRET_"

// EnvSecrets returns a provider reading secret "name" from the
// environment variable prefix+NAME, the name upper-cased with '-' and '.'
// turned into '_': secret("github-token") is REGENT_SECRET_GITHUB_TOKEN
// with the default prefix. An empty prefix means DefaultEnvPrefix, so that
// a configuration can never read arbitrary variables.
func EnvSecrets(prefix string) SecretProvider {
	if prefix == "" {
		prefix = DefaultEnvPrefix
	}
	return envSecrets(prefix)
}

type envSecrets string

func (p envSecrets) Secret(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("secret %w", err)
	}
	v, ok := os.LookupEnv(EnvSecretName(string(p), name))
	if !ok {
		return "", fmt.Errorf("no variable %s in the environment: %w", EnvSecretName(string(p), name), ErrSecretNotFound)
	}
	return v, nil
}

// EnvSecretName is the environment variable holding secret name under
// prefix.
func EnvSecretName(prefix, name string) string {
	return prefix + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(name))
}

// ChainSecrets returns a provider asking each of providers in turn, until
// one holds the secret. An error other than ErrSecretNotFound stops the
// search.
func ChainSecrets(providers ...SecretProvider) SecretProvider {
	return chainSecrets(providers)
}

type chainSecrets []SecretProvider

func (c chainSecrets) Secret(name string) (string, error) {
	for _, p := range c {
		v, err := p.Secret(name)
		if !errors.Is(err, ErrSecretNotFound) {
			return v, err
		}
	}
	return "", fmt.Errorf("secret %q: %w", name, ErrSecretNotFound)
}

// MapSecrets is a provider holding its secrets in memory, for tests and
// for programs that fetch secrets themselves.
type MapSecrets map[string]string

// Secret returns the secret of that name.
func (m MapSecrets) Secret(name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", fmt.Errorf("secret %q: %w", name, ErrSecretNotFound)
	}
	return v, nil
}
