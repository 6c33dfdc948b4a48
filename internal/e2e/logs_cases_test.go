package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// oneBuilder is a configuration with one worker, w1, and one builder, b,
// whose steps are the given shell commands.
func oneBuilder(commands ...string) string {
	var steps []string
	for i, c := range commands {
		steps = append(steps, fmt.Sprintf("step.shell(name = \"s%d\", command = %q)", i+1, c))
	}
	return fmt.Sprintf(`
worker(name = "w1", password = secret("w1"))
builder(name = "b", workers = ["w1"], steps = [%s])
scheduler.force(name = "force", builders = ["b"])
`, strings.Join(steps, ", "))
}

// runOnce starts a master with args and a worker, forces one build of b,
// and returns the farm and the finished build.
func runOnce(t *testing.T, timeout time.Duration, args []string, commands ...string) (*farm, apiBuild) {
	t.Helper()
	f := newFarm(t, oneBuilder(commands...), farmOptions{workers: []string{"w1"}, args: args})
	f.worker("w1", t.TempDir())
	id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
	return f, f.waitFinished(id, timeout)
}

// sseEvent is one event of a build's event stream.
type sseEvent struct {
	name string
	data string
}

// pageEvents opens the build page, follows its live event stream from
// the offsets the page asks for until the stream ends, and returns the
// events.
func pageEvents(t *testing.T, base string, build int64) []sseEvent {
	t.Helper()
	page := getText(t, fmt.Sprintf("%s/builds/%d", base, build))
	m := regexp.MustCompile(`data-events="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("build page without an event stream:\n%s", page)
	}
	url := base + strings.ReplaceAll(m[1], "&amp;", "&")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "":
			if cur.name == "end" {
				return append(out, cur)
			}
			if cur.name != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		}
	}
	t.Fatalf("the event stream ended without an end event: %v", sc.Err())
	return nil
}

// shownLog joins the text of a step's log events: what the page shows.
func shownLog(t *testing.T, events []sseEvent, step int) (text string, from int64) {
	t.Helper()
	var b strings.Builder
	from = -1
	for _, e := range events {
		if e.name != "log" {
			continue
		}
		var ev struct {
			Step   int    `json:"step"`
			Offset int64  `json:"offset"`
			Text   string `json:"text"`
		}
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatalf("log event %q: %v", e.data, err)
		}
		if ev.Step == step {
			if from < 0 {
				from = ev.Offset
			}
			b.WriteString(ev.Text)
		}
	}
	return b.String(), from
}

// noErrors fails t if a process logged an error.
func noErrors(t *testing.T, name, stderr string) {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("%s logged an error: %s", name, line)
		}
	}
}

// C17: a step prints invalid UTF-8 and Latin-1. The build is unaffected,
// the raw log returns the exact bytes, and the page shows the lines with
// replacement characters.
func TestInvalidUTF8LogC17(t *testing.T) {
	t.Parallel()
	f, b := runOnce(t, 60*time.Second, nil,
		`printf '\377\376\n'; printf 'caf\351 na\357ve\n'; printf 'na\303\257ve \342\202\254\n'`)
	if result(b) != "success" {
		t.Fatalf("build: %s (%s)", result(b), b.Reason)
	}
	want := "\xff\xfe\ncaf\xe9 na\xefve\nna\u00efve \u20ac\n"
	if got := f.stepLog(b.ID, 1); got != want {
		t.Fatalf("raw log = %q, want %q", got, want)
	}
	text, _ := shownLog(t, pageEvents(t, f.url(0), b.ID), 1)
	if shown := "\ufffd\ufffd\ncaf\ufffd na\ufffdve\nna\u00efve \u20ac\n"; text != shown {
		t.Fatalf("the page shows %q, want %q", text, shown)
	}
}

// The master's per-step log limit: output past it is dropped after one
// marker line, the step runs on to its end, and the next step logs as
// usual.
func TestStepLogLimit(t *testing.T) {
	t.Parallel()
	ran := t.TempDir() + "/ran-on"
	f, b := runOnce(t, 60*time.Second, []string{"--max-step-log", "100000"},
		fmt.Sprintf(`head -c 3000000 /dev/zero | tr '\0' y; echo; echo more; touch %s`, ran),
		"echo next step")
	if result(b) != "success" {
		t.Fatalf("build: %s (%s)", result(b), b.Reason)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Fatalf("the step did not run on past the limit: %v", err)
	}
	log := f.stepLog(b.ID, 1)
	kept, marker, _ := strings.Cut(log, "\n")
	if kept != strings.Repeat("y", 100000) {
		t.Fatalf("the log does not keep the first 100000 bytes: %d bytes before the first newline", len(kept))
	}
	if !strings.HasPrefix(marker, "[regent: output truncated") || strings.Count(log, "[regent:") != 1 ||
		!strings.HasSuffix(marker, "]\n") || !strings.Contains(marker, "100000") {
		t.Fatalf("want one marker line naming the limit after the kept output, got %q", marker)
	}
	if got := f.stepLog(b.ID, 2); got != "next step\n" {
		t.Fatalf("the next step's log = %q", got)
	}
}

// C19: a step prints 20 MB without a newline: carriage-return progress,
// then one huge line. No error in the worker or master, the output is
// kept exactly, and the page gets the tail of it, which its style folds.
func TestLogWithoutNewlinesC19(t *testing.T) {
	t.Parallel()
	f, b := runOnce(t, 90*time.Second, nil, `i=0; while [ $i -lt 2000 ]; do printf '\rprogress %d' $i; `+
		`i=$((i+1)); done; head -c 20000000 /dev/zero | tr '\0' x`)
	if result(b) != "success" {
		t.Fatalf("build: %s (%s)", result(b), b.Reason)
	}
	var want bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&want, "\rprogress %d", i)
	}
	want.Write(bytes.Repeat([]byte("x"), 20000000))
	got := f.stepLog(b.ID, 1)
	if len(got) != want.Len() || got != want.String() {
		t.Fatalf("raw log: %d bytes, want exactly the %d printed", len(got), want.Len())
	}
	text, from := shownLog(t, pageEvents(t, f.url(0), b.ID), 1)
	if from <= 0 || len(text) > 1<<20 || !strings.HasSuffix(want.String(), text) {
		t.Fatalf("the page got %d bytes from offset %d; want only a tail of the log", len(text), from)
	}
	css := getText(t, f.url(0)+"/static/style.css")
	if !regexp.MustCompile(`pre\.log \{[^}]*white-space: pre-wrap;[^}]*overflow-wrap: anywhere`).MatchString(css) {
		t.Fatal("the log view's style does not fold long lines")
	}
	for _, p := range f.masters {
		noErrors(t, p.name, p.proc.Stderr())
	}
	for _, p := range f.started {
		noErrors(t, p.Name(), p.Stderr())
	}
}

// C18: a step prints 200 MB. Downloading the raw log streams it with flat
// master memory (growth well under 50 MB, measured from /proc), and the
// build page gets only the tail.
func TestBigLogDownloadC18(t *testing.T) {
	t.Parallel()
	const size = 200_000_000
	const line = "regent log line 0123456789 abcdefghijklmnopqrstuvwxyz\n"
	f := newFarm(t, oneBuilder(fmt.Sprintf("yes %q | head -c %d", strings.TrimSuffix(line, "\n"), size)),
		farmOptions{workers: []string{"w1"}})
	master := f.masters[0].proc.PID()
	f.worker("w1", t.TempDir())
	rssIdle, _ := memory(t, master)
	resetPeak(t, master)
	id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
	start := time.Now()
	b := f.waitFinished(id, 3*time.Minute)
	ingest := time.Since(start)
	if result(b) != "success" {
		t.Fatalf("build: %s (%s)", result(b), b.Reason)
	}
	_, peakIngest := memory(t, master)

	rssBefore, _ := memory(t, master)
	resetPeak(t, master)
	resp, err := http.Get(fmt.Sprintf("%s/api/v1/builds/%d/steps/1/log", f.url(0), id))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes (%v), want %d", n, err, size)
	}
	_, peakDownload := memory(t, master)
	want := sha256.New()
	for w := int64(0); w < size; {
		k := min(int64(len(line)), size-w)
		want.Write([]byte(line[:k]))
		w += k
	}
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatal("the downloaded log differs from what the step printed")
	}

	t.Logf("master RSS idle %d MB; peak while ingesting 200 MB in %s: %d MB; before download %d MB, peak during it %d MB",
		rssIdle>>20, ingest.Round(time.Millisecond), peakIngest>>20, rssBefore>>20, peakDownload>>20)
	if growth := peakDownload - rssBefore; growth > 50<<20 {
		t.Fatalf("the master grew by %d MB while serving the download", growth>>20)
	}
	if growth := peakIngest - rssIdle; growth > 50<<20 {
		t.Fatalf("the master grew by %d MB while storing the log", growth>>20)
	}

	text, from := shownLog(t, pageEvents(t, f.url(0), id), 1)
	end := from + int64(len(text))
	if from <= 0 || len(text) > 1<<20 || end != size || from%int64(len(line)) != 0 ||
		!strings.HasPrefix(text, line) {
		t.Fatalf("the page got %d bytes from offset %d; want only a tail of the log, "+
			"from a line start to the end", len(text), from)
	}
}

// resetPeak resets a process's peak resident set size (VmHWM) to its
// current one.
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak memory of pid %d: %v", pid, err)
	}
}
