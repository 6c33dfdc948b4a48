package chaos

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The lines the fencing and ownership checks rely on are read from a
// master's log as slog's text handler writes them.
func TestParseServiceLog(t *testing.T) {
	log := strings.Join([]string{
		`time=2030-01-02T03:04:05.100Z level=INFO msg="service started" master=m2 service=poller:app token=3`,
		`time=2030-01-02T03:04:06.200Z level=INFO msg="recorded branch heads" master=m2 component=poller repo=app created=[] moved=[main] deleted=[] changes_found=1 changes_recorded=1`,
		`time=2030-01-02T03:04:07.300Z level=INFO msg="recorded branch heads" master=m2 component=poller repo=app created=[] moved=[main] deleted=[] changes_found=1 changes_recorded=0`,
		`time=2030-01-02T03:04:08.000Z level=INFO msg="buildset created" master=m2 component=schedule scheduler=tick buildset=9 due=2030-01-02T03:04:08Z late=1ms`,
		`time=2030-01-02T03:04:08.500Z level=INFO msg="buildset created" master=m2 component=schedule scheduler=on-main buildset=10 change=4`,
		`time=2030-01-02T03:04:09.000Z level=INFO msg="service fenced: another master owns it now" master=m2 service=poller:app token=3`,
		`time=2030-01-02T03:04:09.100Z level=WARN msg="fencing: stopping every clustered service of this master" master=m2 reason="heartbeat not renewed for 3.2s"`,
		`time=2030-01-02T03:04:09.200Z level=INFO msg="service stopped" master=m2 service=poller:app token=3`,
		`time=2030-01-02T03:04:09.300Z level=INFO msg="heartbeat renewed" master=m2`,
		`not a log line`,
	}, "\n")
	got := ParseServiceLog("m2-run1", log)
	want := []string{
		"service started poller:app 3 false",
		"recorded branch heads poller:app 0 true",
		"recorded branch heads poller:app 0 false",
		"buildset created scheduler:tick 0 true",
		"service fenced: another master owns it now poller:app 3 false",
		"fencing: stopping every clustered service of this master  0 false",
		"service stopped poller:app 3 false",
	}
	var lines []string
	for _, l := range got {
		lines = append(lines, strings.Join([]string{l.Msg, l.Service, strconv.FormatInt(l.Token, 10), strconv.FormatBool(l.Write)}, " "))
		if l.Process != "m2-run1" || l.At.IsZero() {
			t.Errorf("line %+v: process or time missing", l)
		}
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("parsed:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	first, last := runSpan(log)
	if first.Format("05.000") != "05.100" || last.Format("05.000") != "09.300" {
		t.Errorf("run span %s to %s, want 05.100 to 09.300", first, last)
	}
}

// Marker files name their build; a line cut short is an error rather
// than a marker silently lost.
func TestParseMarkers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("12", "ci-0.v1 3 s1 start 1893553445000000000 \nci-0.v1 3 s1 end 1893553445100000000 \n")
	write("13", "locked-2.v1 1 hold start 1893553446000000000 excl\n")
	ms, err := ParseMarkers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Build != 12 || ms[1].Phase != "end" || ms[2].Lock != lockName || ms[2].Number != 1 {
		t.Fatalf("markers %+v", ms)
	}
	write("14", "ci-0.v1 4 s1 sta")
	if _, err := ParseMarkers(dir); err == nil || !strings.Contains(err.Error(), "marker file 14") {
		t.Fatalf("a cut line gave %v, want an error naming file 14", err)
	}
}
