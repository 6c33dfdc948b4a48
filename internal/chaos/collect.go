package chaos

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ParseMarkers reads the marker files that the campaign's steps wrote in
// dir, one per build named by the build's id. Each line is
//
//	BUILDER NUMBER STEP PHASE UNIX_NANOS [LOCK]
//
// A line that does not parse is returned as an error: a step that wrote
// half a line was cut short, which the checker must not miss either.
func ParseMarkers(dir string) ([]Marker, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read markers: %w", err)
	}
	var out []Marker
	for _, e := range entries {
		id, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("marker file %q is not named by a build id", e.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read markers: %w", err)
		}
		for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			m, err := parseMarker(id, line)
			if err != nil {
				return nil, fmt.Errorf("marker file %d, line %d: %w", id, i+1, err)
			}
			out = append(out, m)
		}
	}
	return out, nil
}

func parseMarker(build int64, line string) (Marker, error) {
	f := strings.Fields(line)
	if len(f) != 5 && len(f) != 6 {
		return Marker{}, fmt.Errorf("malformed line %q", line)
	}
	number, err1 := strconv.ParseInt(f[1], 10, 64)
	ns, err2 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || (f[3] != "start" && f[3] != "end") {
		return Marker{}, fmt.Errorf("malformed line %q", line)
	}
	m := Marker{Build: build, Builder: f[0], Number: number, Step: f[2], Phase: f[3], At: time.Unix(0, ns)}
	if len(f) == 6 {
		m.Lock = f[5]
	}
	return m, nil
}

// ParseServiceLog picks out of a master's log (slog's text format) the
// lines about clustered services: started and stopped with their fencing
// token, fenced, and the durable writes of the poller and the periodic
// scheduler. process names the master's run in the result.
func ParseServiceLog(process, log string) []LogLine {
	var out []LogLine
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		kv := logfmt(sc.Text())
		at, err := time.Parse(time.RFC3339Nano, kv["time"])
		if err != nil {
			continue
		}
		l := LogLine{At: at, Process: process, Msg: kv["msg"], Service: kv["service"]}
		l.Token, _ = strconv.ParseInt(kv["token"], 10, 64)
		switch {
		case l.Msg == "service started" || l.Msg == "service stopped":
		case strings.HasPrefix(l.Msg, "service fenced"):
		case l.Msg == "fencing: stopping every clustered service of this master":
		case l.Msg == "recorded branch heads" && kv["repo"] == "app":
			l.Service = "poller:app"
			l.Write = kv["changes_recorded"] != "" && kv["changes_recorded"] != "0"
		case l.Msg == "buildset created" && kv["scheduler"] == "tick" && kv["due"] != "":
			l.Service, l.Write = "scheduler:tick", true
		case strings.HasPrefix(l.Msg, "timed scheduler fenced") && kv["scheduler"] == "tick":
			l.Service = "scheduler:tick"
		default:
			continue
		}
		out = append(out, l)
	}
	return out
}

// logfmt splits a line of slog's text format into its keys and values,
// unquoting quoted values.
func logfmt(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		kv[key] = val
		line = rest
	}
	return kv
}

// runSpan returns the times of the first and the last line of a process's
// log in slog's text format.
func runSpan(log string) (first, last time.Time) {
	for _, line := range strings.Split(log, "\n") {
		v, ok := strings.CutPrefix(line, "time=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = t
		}
		last = t
	}
	return first, last
}
