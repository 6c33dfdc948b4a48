package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// FetchSource makes the configuration source spec readable as a directory
// and says which content it is.
//
// A spec is either a directory path, whose root is itself and whose
// source is "dir:" followed by a SHA-256 digest of its .star files (the
// only files a configuration can read); or "git+URL#REF:PATH", fetched
// with the git command line into dst (created if needed, reused by later
// calls with the same dst), whose root is PATH inside the checkout and
// whose source is "git:URL@COMMIT". REF defaults to HEAD and PATH to the
// top of the repository. Credentials in URL never appear in the source or
// in errors.
func FetchSource(ctx context.Context, spec, dst string) (root, source string, err error) {
	if rest, ok := strings.CutPrefix(spec, "git+"); ok {
		return fetchGit(ctx, rest, dst)
	}
	return dirSource(spec)
}

// dirSource describes a directory source.
func dirSource(dir string) (string, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", fmt.Errorf("configuration directory %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return "", "", fmt.Errorf("configuration directory: %w", err)
	} else if !fi.IsDir() {
		return "", "", fmt.Errorf("configuration source %s is not a directory "+
			"(a source is a directory or git+URL#REF:PATH)", dir)
	}
	digest, err := DirDigest(abs)
	if err != nil {
		return "", "", err
	}
	return abs, "dir:" + digest, nil
}

// DirDigest returns a SHA-256 digest of the .star files under dir: their
// paths, contents and, for links, targets. Other files cannot change what
// a configuration evaluates to, so they are left out.
func DirDigest(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".star") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "link %q %q\n", rel, target)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "file %q\n", rel)
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		h.Write([]byte("\n\x00"))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest configuration directory: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// gitSpec is a parsed git source.
type gitSpec struct {
	url, ref, dir string
}

// parseGitSpec parses URL#REF:PATH.
func parseGitSpec(s string) (gitSpec, error) {
	g := gitSpec{url: s, ref: "HEAD", dir: "."}
	if i := strings.LastIndex(s, "#"); i >= 0 {
		g.url = s[:i]
		ref, dir, _ := strings.Cut(s[i+1:], ":")
		if ref != "" {
			g.ref = ref
		}
		if dir != "" {
			g.dir = dir
		}
	}
	if err := checkURL(g.url); err != nil {
		return g, fmt.Errorf("git source URL: %w", err)
	}
	if g.ref != "HEAD" {
		if err := checkBranch(g.ref); err != nil {
			return g, fmt.Errorf("git source ref: %w", err)
		}
	}
	if checkWorkdir(g.dir) != nil {
		return g, fmt.Errorf("git source path %q leaves the repository; use a path relative to its top", g.dir)
	}
	g.dir = path.Clean(g.dir)
	return g, nil
}

// fetchGit fetches REF of a git source into dst and checks it out.
func fetchGit(ctx context.Context, spec, dst string) (string, string, error) {
	g, err := parseGitSpec(spec)
	if err != nil {
		return "", "", err
	}
	shown := redactURL(g.url)
	if dst == "" {
		return "", "", errors.New("fetch git source: no destination directory")
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", "", fmt.Errorf("fetch git source: %w", err)
	}
	run := func(args ...string) (string, error) { return runGit(ctx, dst, g.url, shown, args...) }
	if _, err := os.Stat(filepath.Join(dst, ".git")); err != nil {
		if _, err := run("init", "--quiet"); err != nil {
			return "", "", err
		}
	}
	if _, err := run("fetch", "--quiet", "--depth", "1", "--no-tags", "--", g.url, g.ref); err != nil {
		return "", "", err
	}
	if _, err := run("checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"); err != nil {
		return "", "", err
	}
	if _, err := run("clean", "--quiet", "-ffdx"); err != nil {
		return "", "", err
	}
	commit, err := run("rev-parse", "HEAD")
	if err != nil {
		return "", "", err
	}
	root, err := insideCheckout(dst, g.dir)
	if err != nil {
		return "", "", err
	}
	return root, "git:" + shown + "@" + commit, nil
}

// insideCheckout resolves dir inside the checkout at dst, refusing a path
// that is not a directory or that leads outside the checkout by a link.
func insideCheckout(dst, dir string) (string, error) {
	top, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return "", fmt.Errorf("git source: %w", err)
	}
	root, err := filepath.EvalSymlinks(filepath.Join(top, filepath.FromSlash(dir)))
	if err != nil {
		return "", fmt.Errorf("git source path %s: %w", dir, err)
	}
	if rel, err := filepath.Rel(top, root); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("git source path %s leads outside the repository", dir)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("git source path %s is not a directory of the repository", dir)
	}
	return root, nil
}

// runGit runs git in dir and returns its trimmed output. Its errors show
// the URL as shown, never with credentials.
func runGit(ctx context.Context, dir, rawURL, shown string, args ...string) (string, error) {
	full := append([]string{"-c", "protocol.ext.allow=never", "-C", dir}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(strings.ReplaceAll(errOut.String(), rawURL, shown))
		if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
			msg = strings.ReplaceAll(msg, u.User.String(), "")
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s %s: %w", args[0], shown, ctx.Err())
		}
		return "", fmt.Errorf("git %s %s: %s: %w", args[0], shown, msg, err)
	}
	return strings.TrimSpace(out.String()), nil
}

// redactURL returns u without its user information.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	p.User = nil
	return p.String()
}
