package config

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits on a configuration sent as a set of files, such as through the
// REST API: how many files, and how many bytes in all.
const (
	MaxFiles      = 1000
	MaxFilesBytes = 16 << 20
)

// ReadFiles returns the Starlark files under root (regent.star and
// everything it may load), keyed by slash-separated path relative to root.
func ReadFiles(root string) (map[string]string, error) {
	files := map[string]string{}
	total := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != root {
			return filepath.SkipDir // .git and the like
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".star") {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// Load refuses links that lead outside the root; refuse all
			// here so that a sent configuration is what Load would read.
			return fmt.Errorf("%s is a symbolic link; send the file itself", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = string(b)
		total += len(b)
		if len(files) > MaxFiles || total > MaxFilesBytes {
			return fmt.Errorf("configuration under %s is larger than %d files or %d bytes", root, MaxFiles, MaxFilesBytes)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read configuration files: %w", err)
	}
	if _, ok := files["regent.star"]; !ok {
		return nil, fmt.Errorf("%s has no regent.star", root)
	}
	return files, nil
}

// WriteFiles writes a set of configuration files, as ReadFiles returns
// them, under dir. Every path must be a clean relative path to a .star
// file inside dir; anything else is refused before a byte is written.
func WriteFiles(dir string, files map[string]string) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("configuration has %d files, more than %d", len(files), MaxFiles)
	}
	total := 0
	for name, content := range files {
		total += len(content)
		if name == "" || path.Clean(name) != name || path.IsAbs(name) || name == ".." ||
			strings.HasPrefix(name, "../") || !strings.HasSuffix(name, ".star") || strings.Contains(name, "\\") {
			return fmt.Errorf("configuration file name %q: want a clean relative path ending in .star", name)
		}
	}
	if total > MaxFilesBytes {
		return fmt.Errorf("configuration is %d bytes, more than %d", total, MaxFilesBytes)
	}
	if _, ok := files["regent.star"]; !ok {
		return fmt.Errorf("configuration has no regent.star")
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
