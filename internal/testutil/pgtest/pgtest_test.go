package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbURL, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func queryInt(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func databaseExists(t *testing.T, adminURL, name string) bool {
	t.Helper()
	conn := connect(t, adminURL)
	return queryInt(t, conn, "SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
}

func TestURLGivesAnEmptyDatabaseOfItsOwn(t *testing.T) {
	dbURL := URL(t)
	conn := connect(t, dbURL)

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var current string
	if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if "/"+current != u.Path {
		t.Errorf("connected to database %q, want the one in %s", current, dbURL)
	}
	if n := queryInt(t, conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		t.Errorf("new database has %d tables, want 0", n)
	}
	if _, err := conn.Exec(context.Background(), "CREATE TABLE t (id int)"); err != nil {
		t.Errorf("create a table: %v", err)
	}
}

func TestURLDatabaseIsDroppedWhenTheTestEnds(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		dbURL := URL(t)
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		name = strings.TrimPrefix(u.Path, "/")

		// A session left open must not keep the database alive.
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
	})
	if name == "" {
		t.Fatal("subtest made no database")
	}

	adminURL, err := sharedServer()
	if err != nil {
		t.Fatal(err)
	}
	if databaseExists(t, adminURL, name) {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestURLInParallelTests(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			dbURL := URL(t)
			conn := connect(t, dbURL)
			if n := queryInt(t, conn, "SELECT 1"); n != 1 {
				t.Errorf("SELECT 1 gave %d", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[dbURL] {
				t.Errorf("URL %s handed out twice", dbURL)
			}
			seen[dbURL] = true
		})
	}
}

func TestServerStopStartRestartCrash(t *testing.T) {
	s := NewServer(t)
	dbURL := s.NewDatabase(t)
	ctx := context.Background()

	conn := connect(t, dbURL)
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a session survived a restart")
	}
	conn = connect(t, dbURL)
	if n := queryInt(t, conn, "SELECT count(*) FROM kept"); n != 1 {
		t.Errorf("after restart: %d rows, want 1", n)
	}

	if _, err := conn.Exec(ctx, "INSERT INTO kept VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Crash(); err != nil {
		t.Fatalf("crash: %v", err)
	}
	if s.Running() {
		t.Error("server runs after Crash")
	}
	if _, err := pgx.Connect(ctx, dbURL); err == nil {
		t.Error("connected to a crashed server")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("stop a stopped server: %v", err)
	}

	if err := s.Start(); err != nil {
		t.Fatalf("start after crash: %v", err)
	}
	conn = connect(t, dbURL)
	if n := queryInt(t, conn, "SELECT count(*) FROM kept"); n != 2 {
		t.Errorf("after crash: %d rows, want 2 (a committed row was lost)", n)
	}
	if !strings.HasSuffix(s.URL(), fmt.Sprintf(":%d/postgres?sslmode=disable", s.Port())) {
		t.Errorf("URL %s does not name port %d", s.URL(), s.Port())
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := NewServer(t), NewServer(t)
	if a.Port() == b.Port() {
		t.Fatalf("two servers on port %d", a.Port())
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, b.URL())
	if n := queryInt(t, conn, "SELECT 1"); n != 1 {
		t.Errorf("SELECT 1 gave %d", n)
	}
}

func TestStartDetachedOutlivesItsServerValue(t *testing.T) {
	if _, err := findBinDir(); err != nil {
		unavailable(t, err)
	}
	dir, err := testutil.TempDir("pgdetached")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	adminURL, err := StartDetached(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = StopDetached(dir) })
	connect(t, adminURL)

	if err := StopDetached(dir); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := pgx.Connect(context.Background(), adminURL); err == nil {
		t.Error("connected after StopDetached")
	}
	if err := StopDetached(dir); err != nil {
		t.Errorf("stop a stopped server: %v", err)
	}
}

func TestUnavailableSkipsOutsideCIAndFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantSkip: false},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			rec := &recordingTB{TB: t}
			unavailable(rec, fmt.Errorf("no server"))
			if rec.skipped != tc.wantSkip || rec.failed == tc.wantSkip {
				t.Errorf("skipped=%v failed=%v, want skipped=%v", rec.skipped, rec.failed, tc.wantSkip)
			}
			if !strings.Contains(rec.msg, "no server") {
				t.Errorf("message %q does not give the reason", rec.msg)
			}
		})
	}
}

// recordingTB records a skip or a failure instead of ending the test.
type recordingTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestMissingServerUserIsExplained(t *testing.T) {
	_, err := lookupCredential("regent-no-such-user")
	if err == nil {
		t.Fatal("looked up a user that does not exist")
	}
	if !strings.Contains(err.Error(), "useradd") {
		t.Errorf("error %q does not say how to create the user", err)
	}
}

func TestCheckReachableRefusesAClosedParent(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pg")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const stranger = 54321
	err := checkReachable(dir, stranger)
	if err == nil || !strings.Contains(err.Error(), parent) {
		t.Errorf("checkReachable = %v, want an error naming %s", err, parent)
	}

	open, err := testutil.TempDir("reach")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(open) })
	if err := checkReachable(filepath.Join(open, "pg"), stranger); err != nil {
		t.Errorf("checkReachable under %s: %v", open, err)
	}
}

func TestDatabaseName(t *testing.T) {
	for _, testName := range []string{
		"TestX",
		"TestStore/postgres/Builds#01",
		strings.Repeat("VeryLongTestName/", 20),
		"Test/日本語/✓",
	} {
		name := databaseName(testName)
		if len(name) > 63 {
			t.Errorf("databaseName(%q) = %q, longer than 63 bytes", testName, name)
		}
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("databaseName(%q) = %q, has characters needing quotes", testName, name)
		}
		if databaseName(testName) == name {
			t.Errorf("databaseName(%q) gave %q twice", testName, name)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	got, err := withDatabase("postgres://u:secret@127.0.0.1:5432/postgres?sslmode=disable", "t_x")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://u:secret@127.0.0.1:5432/t_x?sslmode=disable"; got != want {
		t.Errorf("withDatabase = %q, want %q", got, want)
	}
	_, err = withDatabase("host=127.0.0.1 password=secret", "t_x")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("withDatabase of a keyword string = %v, want an error without the password", err)
	}
}
