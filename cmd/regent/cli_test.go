package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil"
	"github.com/regent-ci/regent/internal/testutil/procs"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// cliRun is what one run of the regent binary did.
type cliRun struct {
	stdout, stderr string
	code           int // -1: killed after runTimeout
}

// runTimeout bounds a run that should end at once: a command that wrongly
// accepts its flags may start a master or a worker and run on.
const runTimeout = 20 * time.Second

// regent runs the real binary in dir with args.
func regent(t *testing.T, dir string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, procs.Regent(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REGENT_API=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := cliRun{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.code = -1
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run regent %q: %v", args, err)
	}
	return r
}

// commandSetup is one command of the binary with arguments that make it
// valid and harmless (loopback addresses nothing answers, paths in a
// scratch directory), so that a run refused for the flag under test is
// told apart from one refused for something else.
type commandSetup struct {
	command []string
	args    []string // "{dir}" stands for the scratch directory
}

var everyCommand = []commandSetup{
	{[]string{"quickstart"}, []string{"--listen", "127.0.0.1:0", "--data", "{dir}/data", "--repo", "{dir}/no-repo"}},
	{[]string{"master"}, []string{"--listen", "127.0.0.1:0", "--db", "{dir}/regent.db", "--data-dir", "{dir}/data"}},
	{[]string{"worker"}, []string{"--master", "http://127.0.0.1:1", "--name", "w1",
		"--password-file", "{dir}/pw", "--basedir", "{dir}/data"}},
	{[]string{"config", "check"}, []string{"{dir}/cfg"}},
	{[]string{"config", "diff"}, []string{"{dir}/cfg", "--db", "{dir}/regent.db"}},
	{[]string{"config", "apply"}, []string{"{dir}/cfg", "--db", "{dir}/regent.db"}},
	{[]string{"cluster", "status"}, []string{"--db", "{dir}/regent.db"}},
	{[]string{"build", "force"}, []string{"b1", "--api", "http://127.0.0.1:1"}},
	{[]string{"build", "cancel"}, []string{"1", "--api", "http://127.0.0.1:1"}},
	{[]string{"build", "rebuild"}, []string{"1", "--api", "http://127.0.0.1:1"}},
	{[]string{"build", "show"}, []string{"1", "--api", "http://127.0.0.1:1"}},
	{[]string{"build", "logs"}, []string{"1", "--api", "http://127.0.0.1:1"}},
	{[]string{"version"}, nil},
}

// scratch makes a scratch directory holding a valid configuration in cfg
// and a password file, and returns it with args expanded into it.
func scratch(t *testing.T, args []string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"cfg/regent.star": `worker(name = "w1", password = "pw")` + "\n",
		"pw":              "pw\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "{dir}", dir)
	}
	return dir, out
}

// assertNothingStarted fails t if a refused run left a database or a data
// directory behind: usage errors must come before any side effect.
func assertNothingStarted(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"regent.db", "data"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("a refused run left %s behind", name)
		}
	}
}

// flagsOf lists the flags a command's --help shows, with their type
// ("string", "duration", "int", "value", or "" for a boolean).
func flagsOf(t *testing.T, command []string) map[string]string {
	t.Helper()
	r := regent(t, t.TempDir(), append(command, "--help")...)
	if r.code != 0 {
		t.Fatalf("regent %s --help: exit %d\n%s", strings.Join(command, " "), r.code, r.stderr)
	}
	line := regexp.MustCompile(`^  -([a-z][a-z0-9-]*)(?: ([a-z]+))?`)
	flags := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(r.stderr))
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2]
		}
	}
	return flags
}

// Every flag of every command refuses the values no command can use, a
// duration or number that is zero or negative and a string given empty,
// with a usage error naming the flag and the value, before it starts or
// creates anything.
func TestEveryFlagRefusesValuesOfNoUse(t *testing.T) {
	t.Parallel()
	// Empty has a meaning for these: no tags.
	mayBeEmpty := map[string]bool{"master --tags": true}
	bad := map[string][]string{"duration": {"0s", "-1s"}, "int": {"0", "-1"}, "string": {""}}
	tried := 0
	for _, c := range everyCommand {
		command := strings.Join(c.command, " ")
		for flagName, kind := range flagsOf(t, c.command) {
			// Booleans and -p NAME=VALUE have no value of no use; a flag
			// of a kind checkFlags does not know needs a case there.
			if _, known := bad[kind]; !known && kind != "" && kind != "value" {
				t.Errorf("regent %s --%s is a %s flag, which checkFlags does not check", command, flagName, kind)
			}
			if mayBeEmpty[command+" --"+flagName] {
				continue
			}
			for _, value := range bad[kind] {
				tried++
				t.Run(command+" --"+flagName+"="+value, func(t *testing.T) {
					t.Parallel()
					dir, args := scratch(t, c.args)
					args = append(append(c.command, args...), "--"+flagName+"="+value)
					r := regent(t, dir, args...)
					if r.code != 2 {
						t.Fatalf("exit %d, want 2\nstderr:\n%s", r.code, r.stderr)
					}
					if !strings.Contains(r.stderr, "--"+flagName) || !strings.Contains(r.stderr, strconv.Quote(value)) {
						t.Errorf("the error names not the flag and its value %q:\n%s", value, r.stderr)
					}
					assertNothingStarted(t, dir)
				})
			}
		}
	}
	// The help texts were read: the commands have dozens of such flags.
	if tried < 50 {
		t.Fatalf("tried only %d bad values; did the help format change?", tried)
	}
}

// Values of the right type that still mean nothing are refused with a
// usage error naming what is wrong.
func TestFlagsRefuseMeaninglessValues(t *testing.T) {
	t.Parallel()
	master := []string{"master", "--listen", "127.0.0.1:0", "--db", "{dir}/regent.db", "--data-dir", "{dir}/data"}
	worker := []string{"worker", "--master", "http://127.0.0.1:1", "--name", "w1",
		"--password-file", "{dir}/pw", "--basedir", "{dir}/data"}
	quickstart := []string{"quickstart", "--listen", "127.0.0.1:0", "--data", "{dir}/data", "--repo", "{dir}/no-repo"}
	api := []string{"--api", "http://127.0.0.1:1"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"master log level", append(master, "--log-level", "loud"), `"loud" for --log-level`},
		{"worker log level", append(worker, "--log-level", "loud"), `"loud" for --log-level`},
		{"quickstart log level", append(quickstart, "--log-level", "loud"), `"loud" for --log-level`},
		{"master name", append(master, "--name", "bad name/<x>"), `"bad name/<x>" for --name`},
		{"master name not ASCII", append(master, "--name", "mäster"), `"mäster" for --name`},
		{"master no roles", append(master, "--roles", ""), `"" for --roles`},
		{"master only commas", append(master, "--roles", " , "), "item 1 of the comma-separated list is empty"},
		{"master empty role", append(master, "--roles", "web,,dispatch"), `"web,,dispatch" for --roles`},
		{"master empty tag", append(master, "--tags", "a,,b"), `"a,,b" for --tags: item 2`},
		{"master last tag empty", append(master, "--tags", "a,"), `"a," for --tags: item 2`},
		{"master ttl 1ns", append(master, "--ttl", "1ns"), `"1ns" for --ttl: want at least 1s`},
		{"master ttl under 1s", append(master, "--ttl", "999ms"), `"999ms" for --ttl`},
		{"master worker ttl 1ms", append(master, "--worker-ttl", "1ms"), `"1ms" for --worker-ttl`},
		{"master port too high", append(master, "--listen", "127.0.0.1:99999"), `"127.0.0.1:99999" for --listen`},
		{"master port negative", append(master, "--listen", "127.0.0.1:-1"), `"127.0.0.1:-1" for --listen`},
		{"master port name", append(master, "--listen", "127.0.0.1:http"), `"127.0.0.1:http" for --listen`},
		{"quickstart port too high", append(quickstart, "--listen", "127.0.0.1:65536"), `"127.0.0.1:65536" for --listen`},
		{"master secrets dir missing", append(master, "--secrets-dir", "{dir}/none"), `"{dir}/none" for --secrets-dir`},
		{"master secrets dir a file", append(master, "--secrets-dir", "{dir}/pw"), `"{dir}/pw" for --secrets-dir: not a directory`},
		{"master config missing", append(master, "--config", "{dir}/none"), `"{dir}/none" for --config`},
		{"master config a file", append(master, "--config", "{dir}/pw"), `"{dir}/pw" for --config: not a directory`},
		{"master config git without URL", append(master, "--config", "git+#main:ci"), `"git+#main:ci" for --config`},
		{"worker secrets dir missing", append(worker, "--secrets-dir", "{dir}/none"), `"{dir}/none" for --secrets-dir`},
		{"worker empty master URL", append(worker, "--master", "http://127.0.0.1:1,,http://127.0.0.1:2"),
			`"http://127.0.0.1:1,,http://127.0.0.1:2" for --master: item 2`},
		{"config check secrets dir missing", []string{"config", "check", "{dir}/cfg", "--secrets-dir", "{dir}/none"},
			`"{dir}/none" for --secrets-dir`},
		{"config apply secrets dir missing", []string{"config", "apply", "{dir}/cfg", "--db", "{dir}/regent.db",
			"--secrets-dir", "{dir}/none"}, `"{dir}/none" for --secrets-dir`},
		{"master unknown role", append(master, "--roles", "web,cook"), `unknown role "cook"`},
		{"master tag", append(master, "--tags", "a,b c"), `"b c" for --tags`},
		{"master listen", append(master, "--listen", "8010"), `"8010" for --listen`},
		{"master extra argument", append(master, "extra"), `unexpected argument "extra"`},
		{"worker master URL", append(worker, "--master", "http://127.0.0.1:1,127.0.0.1:2"), `"127.0.0.1:2"`},
		{"worker name", append(worker, "--name", "w 1"), `"w 1" for --name`},
		{"quickstart listen", append(quickstart, "--listen", "localhost"), `"localhost" for --listen`},
		{"config db and api", []string{"config", "apply", "{dir}/cfg", "--db", "{dir}/regent.db",
			"--api", "http://127.0.0.1:1"}, "give one of --db or --api, not both"},
		{"config neither db nor api", []string{"config", "diff", "{dir}/cfg"}, "give one of --db or --api"},
		{"config token without api", []string{"config", "diff", "{dir}/cfg", "--db", "{dir}/regent.db",
			"--token-file", "{dir}/pw"}, "--token-file goes with --api"},
		{"config secrets with api", []string{"config", "apply", "{dir}/cfg", "--api", "http://127.0.0.1:1",
			"--secrets-dir", "{dir}"}, "--secrets-dir does not go with --api"},
		{"config api URL", []string{"config", "diff", "{dir}/cfg", "--api", "127.0.0.1:1"}, `"127.0.0.1:1" for --api`},
		{"config two sources", []string{"config", "check", "{dir}/cfg", "{dir}/cfg"}, "exactly one configuration source"},
		{"cluster extra argument", []string{"cluster", "status", "now", "--db", "{dir}/regent.db"}, `unexpected argument "now"`},
		{"cluster without db", []string{"cluster", "status"}, "--db is required"},
		{"build logs step", append([]string{"build", "logs", "1", "--step", "-1"}, api...), `"-1" for --step`},
		{"build id zero", append([]string{"build", "show", "0"}, api...), `"0" is not a build id`},
		{"build id word", append([]string{"build", "cancel", "one"}, api...), `"one" is not a build id`},
		{"build id huge", append([]string{"build", "rebuild", "99999999999999999999"}, api...), "is not a build id"},
		{"build id negative", append([]string{"build", "logs", "--", "-2"}, api...), `"-2" is not a build id`},
		{"build two ids", append([]string{"build", "show", "1", "2"}, api...), "want a build id"},
		{"build builder name", append([]string{"build", "force", "no/such builder"}, api...),
			`"no/such builder" is not a valid name`},
		{"build empty builder name", append([]string{"build", "force", ""}, api...), `"" is not a valid name`},
		{"build property", append([]string{"build", "force", "b1", "-p", "=x"}, api...), `"=x"`},
		{"build api URL", []string{"build", "show", "1", "--api", "ftp://127.0.0.1"}, `"ftp://127.0.0.1" for --api`},
		{"version argument", []string{"version", "now"}, `unexpected argument "now"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, args := scratch(t, tc.args)
			want := strings.ReplaceAll(tc.want, "{dir}", dir)
			r := regent(t, dir, args...)
			if r.code != 2 || !strings.Contains(r.stderr, want) {
				t.Fatalf("exit %d, want 2 and an error saying %q; stderr:\n%s", r.code, want, r.stderr)
			}
			assertNothingStarted(t, dir)
		})
	}
}

// --help and -h print help and succeed on every command and command
// group; a group without its command is a usage error.
func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	paths := [][]string{{}, {"config"}, {"build"}, {"cluster"}}
	for _, c := range everyCommand {
		paths = append(paths, c.command)
	}
	for _, path := range paths {
		for _, help := range []string{"--help", "-h"} {
			t.Run(strings.Join(append(path, help), " "), func(t *testing.T) {
				t.Parallel()
				r := regent(t, t.TempDir(), append(path, help)...)
				if r.code != 0 || !strings.Contains(r.stderr, "Usage") {
					t.Fatalf("exit %d, want 0 and a usage text; stderr:\n%s", r.code, r.stderr)
				}
			})
		}
	}
	for _, group := range paths[:4] {
		if r := regent(t, t.TempDir(), group...); r.code != 2 || !strings.Contains(r.stderr, "Usage") {
			t.Errorf("regent %s: exit %d, want 2 and a usage text", strings.Join(group, " "), r.code)
		}
	}
}

// Commands that only read a database refuse a SQLite path where none
// exists, and a file there that is no Regent database, and create or
// write nothing there; once the database exists they read it.
func TestReadOnlyCommandsCreateNoDatabase(t *testing.T) {
	t.Parallel()
	dir, _ := scratch(t, nil)
	db := filepath.Join(dir, "regent.db")
	cfg := filepath.Join(dir, "cfg")
	readers := [][]string{
		{"cluster", "status", "--db", db},
		{"cluster", "status", "--db", db, "--json"},
		{"config", "diff", cfg, "--db", db},
		{"config", "apply", cfg, "--db", db, "--dry-run"},
	}
	for _, args := range readers {
		r := regent(t, dir, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "no database at "+db) {
			t.Errorf("regent %s: exit %d, want 2 and \"no database at %s\"; stderr:\n%s",
				strings.Join(args, " "), r.code, db, r.stderr)
		}
		if entries, _ := filepath.Glob(db + "*"); len(entries) > 0 {
			t.Fatalf("regent %s created %v", strings.Join(args, " "), entries)
		}
	}

	// An existing file that is no Regent database, such as an empty one,
	// is refused by name and left as it was.
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range readers {
		r := regent(t, dir, args...)
		if r.code != 2 || !strings.Contains(r.stderr, db+": not a Regent database") {
			t.Errorf("regent %s on an empty file: exit %d, want 2 and \"%s: not a Regent database\"; "+
				"stderr:\n%s", strings.Join(args, " "), r.code, db, r.stderr)
		}
		if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
			t.Fatalf("regent %s wrote to the empty file: %v, %v", strings.Join(args, " "), fi.Size(), err)
		}
		if entries, _ := filepath.Glob(db + "?*"); len(entries) > 0 {
			t.Fatalf("regent %s created %v", strings.Join(args, " "), entries)
		}
	}
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}

	if r := regent(t, dir, "config", "apply", cfg, "--db", db); r.code != 0 {
		t.Fatalf("config apply: exit %d\n%s", r.code, r.stderr)
	}
	for _, args := range readers {
		if r := regent(t, dir, args...); r.code != 0 {
			t.Errorf("regent %s on an existing database: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// A master that accepts connections but never answers (stopped, hung) does
// not hang the commands that talk to it: they give up after
// REGENT_API_TIMEOUT and say which master did not answer.
func TestCommandsGiveUpOnAMasterThatDoesNotAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	url := "http://" + ln.Addr().String()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "regent.star"), []byte(`worker("w", "pw")`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGENT_API_TIMEOUT", "2s")
	for _, args := range [][]string{
		{"config", "diff", dir, "--api", url},
		{"config", "apply", dir, "--api", url},
		{"build", "show", "1", "--api", url},
		{"build", "force", "b", "--api", url},
	} {
		start := time.Now()
		r := regent(t, dir, args...)
		if r.code != 2 || !strings.Contains(r.stderr, ln.Addr().String()) && !strings.Contains(r.stderr, "timeout") {
			t.Errorf("regent %q against a silent master: exit %d, stderr %q; want exit 2 naming it",
				args, r.code, r.stderr)
		}
		t.Logf("regent %q gave up after %s", args, time.Since(start).Round(time.Millisecond))
	}
}
