// Package pgtest gives tests fresh, empty PostgreSQL databases on a
// throwaway server, and whole servers that a test may stop, crash and
// restart.
//
// The server behind [URL] is, in order of preference:
//
//   - the one whose admin URL is in REGENT_TEST_POSTGRES_URL (make test
//     starts one server for all packages and sets it);
//   - one the test process starts on first use from the PostgreSQL 15
//     binaries on the machine (initdb in a scratch directory, a free
//     loopback port, durability switched off for speed) and stops when
//     [Main] returns, or, at the latest, when the process exits.
//
// When the tests run as root the server runs as the postgres account,
// since PostgreSQL refuses to run as root.
//
// When no server can be had, tests that ask for one are skipped, unless the
// environment says CI=true: in CI a missing PostgreSQL fails the test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/testutil"
)

// envURL names the environment variable holding the admin URL of an
// existing server to create test databases on.
const envURL = "REGENT_TEST_POSTGRES_URL"

// The server shared by all the tests of this process, started on first use.
var shared struct {
	once sync.Once
	url  string
	err  error
}

// Main runs the tests of m and then stops the server this process started,
// if any, and returns the exit code for os.Exit. It is [testutil.Main],
// which also runs the other helpers' exit hooks:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int { return testutil.Main(m) }

// URL returns the URL of a new, empty database that belongs to t alone. The
// database is dropped when t ends, after terminating any sessions still
// connected to it.
func URL(t testing.TB) string {
	t.Helper()
	adminURL, err := sharedServer()
	if err != nil {
		unavailable(t, err)
		return ""
	}
	name := databaseName(t.Name())
	dbURL := createDatabase(t, adminURL, name)
	t.Cleanup(func() {
		if err := dropDatabase(adminURL, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dbURL
}

// sharedServer returns the admin URL of the server shared by this process,
// starting it on first use.
func sharedServer() (string, error) {
	shared.once.Do(func() {
		if u := os.Getenv(envURL); u != "" {
			shared.url = u
			return
		}
		dir, err := testutil.TempDir("pg")
		if err != nil {
			shared.err = err
			return
		}
		s, err := newServer(dir, false, false)
		if err != nil {
			_ = os.RemoveAll(dir)
			shared.err = err
			return
		}
		testutil.AtExit(func() {
			if err := s.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			}
			_ = os.RemoveAll(dir)
		})
		shared.url = s.URL()
	})
	return shared.url, shared.err
}

// NewServer starts a PostgreSQL server for t alone, to be stopped, crashed
// or restarted by the test; it is stopped and its files removed when t
// ends. Its log is shown if t fails. Unlike the shared server it commits
// synchronously, so that [Server.Crash] loses no committed transaction.
func NewServer(t testing.TB) *Server {
	t.Helper()
	dir, err := testutil.TempDir("pg")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s, err := newServer(dir, false, true)
	if err != nil {
		_ = os.RemoveAll(dir)
		unavailable(t, err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: log of PostgreSQL on port %d:\n%s", s.Port(), tail(readFrom(s.LogPath(), 0), 16<<10))
		}
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	return s
}

// NewDatabase creates a new, empty database on s and returns its URL. It
// is not dropped: the server's files go when the test ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, s.URL(), databaseName(t.Name()))
}

// unavailable ends a test that cannot have PostgreSQL: a skip, or a failure
// in CI where a missing server means a broken machine.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if inCI() {
		t.Fatalf("pgtest: PostgreSQL is required in CI: %v", err)
		return
	}
	t.Skipf("pgtest: skipping, no PostgreSQL: %v", err)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// createDatabase creates the database name on the server at adminURL and
// returns the URL of the new database.
func createDatabase(t testing.TB, adminURL, name string) string {
	t.Helper()
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", redact(adminURL), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return dbURL
}

// dropDatabase drops the database name, ending its sessions first.
func dropDatabase(adminURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: connect to %s: %w", name, redact(adminURL), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// databaseName makes a unique database name that shows which test it
// belongs to.
func databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	return "t_" + strings.Trim(b.String(), "_") + "_" + hex.EncodeToString(suffix[:])
}

// withDatabase returns adminURL with its database replaced by name.
func withDatabase(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL, got %s", envURL, redact(adminURL))
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// redact hides the password in a URL for messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(value hidden: not a URL)" // it may hold a password anywhere
	}
	return u.Redacted()
}
