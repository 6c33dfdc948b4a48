package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFilesAndWriteFilesRoundTrip(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	for name, body := range map[string]string{"regent.star": "load(\"lib/x.star\", \"x\")\n", "lib/x.star": "x = 1\n", "notes.txt": "skip"} {
		p := filepath.Join(src, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := ReadFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files["lib/x.star"] != "x = 1\n" {
		t.Fatalf("files = %v, want the two .star files", files)
	}
	dst := t.TempDir()
	if err := WriteFiles(dst, files); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "lib", "x.star")); string(b) != "x = 1\n" {
		t.Fatalf("written lib/x.star = %q", b)
	}
}

func TestReadFilesRefusesLinks(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "regent.star"), []byte("x = 1\n"), 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "secret.star")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFiles(src); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("ReadFiles with a link = %v, want it refused", err)
	}
}

func TestWriteFilesRefusesEscapingNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"../x.star", "/etc/x.star", "a/../../x.star", "x.txt", "", "a\\b.star", "./x.star"} {
		files := map[string]string{"regent.star": "", name: ""}
		if err := WriteFiles(t.TempDir(), files); err == nil {
			t.Errorf("WriteFiles accepted %q", name)
		}
	}
	if err := WriteFiles(t.TempDir(), map[string]string{"lib.star": ""}); err == nil {
		t.Error("WriteFiles accepted a configuration without regent.star")
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://example.com/a.git", true},
		{"/srv/git/with space/repo", true}, // git takes such paths
		{"", false},
		{"--upload-pack=evil", false},
		{"/srv/a\nb", false},
		{" /srv/a", false},
		{"/srv/a\x7f", false},
	} {
		if err := checkURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("checkURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}
