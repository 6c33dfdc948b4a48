package config

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirSource checks the digest of a directory source: it changes with
// the .star files and only with them.
func TestDirSource(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{"regent.star": "x = 1\n", "lib/a.star": "y = 2\n", "README": "hi"})
	root, source, err := FetchSource(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, root, dir)
	if !strings.HasPrefix(source, "dir:") || len(source) != len("dir:")+64 {
		t.Fatalf("source %q, want dir:SHA256", source)
	}
	again := func() string {
		t.Helper()
		_, s, err := FetchSource(context.Background(), dir, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	eq(t, again(), source)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	eq(t, again(), source)
	if err := os.WriteFile(filepath.Join(dir, "lib/a.star"), []byte("y = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again() == source {
		t.Fatal("changing a loaded file left the source unchanged")
	}
	if _, _, err := FetchSource(context.Background(), filepath.Join(dir, "README"), ""); err == nil {
		t.Fatal("a file was accepted as a directory source")
	}
	if _, _, err := FetchSource(context.Background(), filepath.Join(dir, "nope"), ""); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}

// git runs git in dir for a test.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=test", "-c", "user.email=test@example.com",
		"-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitSource fetches a configuration from a git repository, twice.
func TestGitSource(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	repo := writeFiles(t, map[string]string{"ci/regent.star": `worker("w", "pw")` + "\n", "main.go": "package main\n"})
	git(t, repo, "init", "--quiet")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "--quiet", "-m", "first")
	first := git(t, repo, "rev-parse", "HEAD")

	dst := filepath.Join(t.TempDir(), "checkout")
	url := "file://" + repo
	root, source, err := FetchSource(context.Background(), "git+"+url+"#main:ci", dst)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, root, filepath.Join(dst, "ci"))
	eq(t, source, "git:"+url+"@"+first)
	if _, err := Load(context.Background(), root, Options{}); err != nil {
		t.Fatal(err)
	}

	// A new commit is fetched into the same checkout.
	if err := os.WriteFile(filepath.Join(repo, "ci/regent.star"), []byte(`worker("w2", "pw")`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "commit", "--quiet", "-am", "second")
	second := git(t, repo, "rev-parse", "HEAD")
	_, source, err = FetchSource(context.Background(), "git+"+url+"#main:ci", dst)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, source, "git:"+url+"@"+second)
	st, err := Load(context.Background(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, st.Workers[0].Name, "w2")

	// The default ref is HEAD and the default path the top.
	root, _, err = FetchSource(context.Background(), "git+"+url, filepath.Join(t.TempDir(), "top"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
		t.Fatal(err)
	}
}

// TestGitSourceErrors checks refused git sources. None of them reaches
// beyond the loopback interface.
func TestGitSourceErrors(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	repo := writeFiles(t, map[string]string{"regent.star": "x = 1\n", "file.txt": "x"})
	git(t, repo, "init", "--quiet")
	if err := os.Symlink("/etc", filepath.Join(repo, "escape")); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", ".")
	git(t, repo, "commit", "--quiet", "-m", "first")
	url := "file://" + repo
	tests := []struct {
		name, spec, want string
	}{
		{"missing ref", "git+" + url + "#nope", "git fetch " + url + ": "},
		{"path leaving the repository", "git+" + url + "#main:../..", "git source path \"../..\" leaves the repository"},
		{"path through a link", "git+" + url + "#main:escape", "git source path escape leads outside the repository"},
		{"path to a file", "git+" + url + "#main:file.txt", "git source path file.txt is not a directory of the repository"},
		{"option as URL", "git+--upload-pack=touch /tmp/x", "git source URL: \"--upload-pack=touch /tmp/x\" starts with '-'"},
		{"option as ref", "git+" + url + "#--upload-pack=x", "git source ref: \"--upload-pack=x\" is not a valid branch name"},
		{"credentials", "git+http://user:hunter2@127.0.0.1:1/x.git#main", "git fetch http://127.0.0.1:1/x.git: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := FetchSource(context.Background(), tt.spec, filepath.Join(t.TempDir(), "dst"))
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
