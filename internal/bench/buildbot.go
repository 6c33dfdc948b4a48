package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Buildbot's commands, from Debian's packages; they run on
// /usr/bin/python3 whatever python3 comes first on PATH.
const (
	buildbotBin       = "/usr/bin/buildbot"
	buildbotWorkerBin = "/usr/bin/buildbot-worker"
	systemPython      = "/usr/bin/python3"
)

// buildbotSite is one Buildbot installation inside a lab: its masters,
// their workers, and the scripts that configure them.
type buildbotSite struct {
	lab *Lab
	// scripts is scripts/buildbot of the repository: mastercfg.py and
	// pylib, the placeholder web plugin and the event log.
	scripts string
	dbURL   string
}

// bbMaster is one Buildbot master: a base directory, its ports, its
// process and the event log it appends to.
type bbMaster struct {
	site    *buildbotSite
	name    string
	dir     string
	pbPort  int
	wwwPort int
	events  string
	cfgArgs []string
	proc    *Proc
	log     *fileWatch
}

// newBuildbotMaster creates a master's base directory and its
// master.cfg; cfgArgs are more options of mastercfg.py.
func (s *buildbotSite) newMaster(ctx context.Context, name string, cfgArgs ...string) (*bbMaster, error) {
	m := &bbMaster{site: s, name: name, dir: s.lab.Path(name), events: s.lab.Path(name + "-events.jsonl")}
	var err error
	if m.pbPort, err = freePort(); err != nil {
		return nil, err
	}
	if m.wwwPort, err = freePort(); err != nil {
		return nil, err
	}
	if _, err := runCommand(ctx, s.lab.Dir, s.env(), buildbotBin, "create-master", "-q", "-r",
		"--db", s.dbURL, m.dir); err != nil {
		return nil, fmt.Errorf("create Buildbot master %s: %w", name, err)
	}
	m.cfgArgs = cfgArgs
	if err := m.writeConfig(ctx); err != nil {
		return nil, err
	}
	m.log = &fileWatch{path: filepath.Join(m.dir, "twistd.log")}
	return m, nil
}

// writeConfig writes the master's master.cfg with its options and more.
func (m *bbMaster) writeConfig(ctx context.Context, more ...string) error {
	args := append([]string{filepath.Join(m.site.scripts, "mastercfg.py"),
		"--out", filepath.Join(m.dir, "master.cfg"),
		"--pb-port", strconv.Itoa(m.pbPort), "--www-port", strconv.Itoa(m.wwwPort),
		"--db-url", m.site.dbURL, "--events", m.events}, m.cfgArgs...)
	args = append(args, more...)
	if _, err := runCommand(ctx, m.site.lab.Dir, nil, systemPython, args...); err != nil {
		return fmt.Errorf("write master.cfg of %s: %w", m.name, err)
	}
	return nil
}

// env is the environment Buildbot's processes need: the placeholder web
// plugin and the event log on the Python path.
func (s *buildbotSite) env() []string {
	return []string{"PYTHONPATH=" + filepath.Join(s.scripts, "pylib")}
}

// start starts the master in the foreground and waits until it runs.
func (m *bbMaster) start(ctx context.Context, timeout time.Duration) error {
	p, err := m.site.lab.Start(m.name, buildbotBin, []string{"start", "--nodaemon", m.dir}, m.site.env(), m.dir)
	if err != nil {
		return err
	}
	m.proc = p
	if err := m.log.waitFor(ctx, p, "BuildMaster is running", timeout); err != nil {
		return fmt.Errorf("start Buildbot master %s: %w", m.name, err)
	}
	return nil
}

func (m *bbMaster) base() string { return fmt.Sprintf("http://127.0.0.1:%d", m.wwwPort) }

// startWorkers creates and starts the workers w1..wN of master m and
// waits until the master shows them all connected.
func (s *buildbotSite) startWorkers(ctx context.Context, m *bbMaster, n int) error {
	for _, name := range workerNames(n) {
		dir := s.lab.Path("worker-" + name)
		if _, err := runCommand(ctx, s.lab.Dir, nil, buildbotWorkerBin, "create-worker", "-q", "-r",
			dir, fmt.Sprintf("127.0.0.1:%d", m.pbPort), name, "bench"); err != nil {
			return fmt.Errorf("create Buildbot worker %s: %w", name, err)
		}
		if _, err := s.lab.Start("worker-"+name, buildbotWorkerBin, []string{"start", "--nodaemon", dir}, nil, dir); err != nil {
			return err
		}
	}
	err := poll(ctx, 2*time.Minute, func() (bool, error) {
		var l struct {
			Workers []struct {
				ConnectedTo []any `json:"connected_to"`
			} `json:"workers"`
		}
		if err := getJSON(ctx, m.base()+"/api/v2/workers", &l); err != nil {
			return false, err
		}
		connected := 0
		for _, w := range l.Workers {
			if len(w.ConnectedTo) > 0 {
				connected++
			}
		}
		return connected == n, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %d Buildbot workers to connect: %w", n, err)
	}
	return nil
}

// reconfigure makes the master read its master.cfg again (SIGHUP, as
// `buildbot reconfig` does) and returns how long it took until the
// master logged the reconfiguration complete.
func (m *bbMaster) reconfigure(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	m.log.skipToEnd()
	start := time.Now()
	if err := m.proc.signal(syscall.SIGHUP); err != nil {
		return 0, err
	}
	if err := m.log.waitFor(ctx, m.proc, "configuration update complete", timeout); err != nil {
		return 0, fmt.Errorf("reconfigure Buildbot master %s: %w", m.name, err)
	}
	return time.Since(start), nil
}

// bbDispatcher drives the dispatch workload through a Buildbot master's
// REST API, and times it from the master's event log.
type bbDispatcher struct {
	m      *bbMaster
	mu     sync.Mutex
	events *eventLog
}

func newBBDispatcher(m *bbMaster) *bbDispatcher {
	return &bbDispatcher{m: m, events: newEventLog(m.events)}
}

func (d *bbDispatcher) force(ctx context.Context, builder string) (int64, error) {
	body := map[string]any{"jsonrpc": "2.0", "method": "force", "id": 1,
		"params": map[string]any{"builderNames": []string{builder}}}
	var answer struct {
		Result []json.RawMessage `json:"result"`
		Error  any               `json:"error"`
	}
	if err := postJSON(ctx, d.m.base()+"/api/v2/forceschedulers/force", body, &answer); err != nil {
		return 0, err
	}
	if len(answer.Result) != 2 {
		return 0, fmt.Errorf("force %s: unexpected answer %v %v", builder, answer.Result, answer.Error)
	}
	var byBuilder map[string]int64
	if err := json.Unmarshal(answer.Result[1], &byBuilder); err != nil || len(byBuilder) != 1 {
		return 0, fmt.Errorf("force %s: unexpected request ids %s", builder, answer.Result[1])
	}
	for _, id := range byBuilder {
		return id, nil
	}
	panic("unreachable")
}

func (d *bbDispatcher) outcomes(_ context.Context, ids []int64) (map[int64]outcome, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.events.read(); err != nil {
		return nil, false, err
	}
	out := make(map[int64]outcome, len(ids))
	for _, id := range ids {
		o, ok := d.events.outcome(id)
		if !ok {
			return nil, false, nil
		}
		out[id] = o
	}
	return out, true, nil
}

// eventLog reads the JSON lines that pylib/regentbench_events.py appends,
// as they come.
type eventLog struct {
	watch       fileWatch
	buildOf     map[int64]int64     // request -> build
	stepStarted map[int64]time.Time // build -> its first shell step started
	finished    map[int64]time.Time // request -> its build finished
	changes     map[string]time.Time
}

func newEventLog(path string) *eventLog {
	return &eventLog{watch: fileWatch{path: path}, buildOf: map[int64]int64{},
		stepStarted: map[int64]time.Time{}, finished: map[int64]time.Time{}, changes: map[string]time.Time{}}
}

// read takes in the lines appended since the last read.
func (e *eventLog) read() error {
	data, err := e.watch.next()
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		var ev struct {
			Ev       string  `json:"ev"`
			T        float64 `json:"t"`
			Request  int64   `json:"buildrequestid"`
			Build    int64   `json:"buildid"`
			Number   int     `json:"number"`
			Revision string  `json:"revision"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("read Buildbot event %q: %w", sc.Text(), err)
		}
		t := time.UnixMicro(int64(ev.T * 1e6))
		switch ev.Ev {
		case "build_new":
			e.buildOf[ev.Request] = ev.Build
		case "step_started":
			// Step 0 is Buildbot's own worker preparation; step 1 is the
			// benchmark's shell step.
			if ev.Number == 1 {
				e.stepStarted[ev.Build] = t
			}
		case "build_finished":
			e.finished[ev.Request] = t
		case "change_new":
			e.changes[ev.Revision] = t
		}
	}
	return sc.Err()
}

// outcome returns a request's outcome once its build has finished.
func (e *eventLog) outcome(request int64) (outcome, bool) {
	fin, ok := e.finished[request]
	if !ok {
		return outcome{}, false
	}
	started, ok := e.stepStarted[e.buildOf[request]]
	if !ok {
		return outcome{}, false
	}
	return outcome{stepStarted: started, finished: fin}, true
}

// fileWatch reads a growing file from where it last stopped, whole lines
// at a time.
type fileWatch struct {
	path   string
	offset int64
}

// next returns the complete lines appended since the last call.
func (w *fileWatch) next() (string, error) {
	f, err := os.Open(w.path)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(w.offset, io.SeekStart); err != nil {
		return "", err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	end := strings.LastIndexByte(string(data), '\n') + 1
	w.offset += int64(end)
	return string(data[:end]), nil
}

// skipToEnd makes the next read start at the file's current end.
func (w *fileWatch) skipToEnd() {
	if fi, err := os.Stat(w.path); err == nil {
		w.offset = fi.Size()
	}
}

// waitFor waits until a line holding substr is appended, at most
// timeout, failing early if p exits.
func (w *fileWatch) waitFor(ctx context.Context, p *Proc, substr string, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, error) {
		exited := p.Exited()
		data, err := w.next()
		if err != nil {
			return false, err
		}
		if strings.Contains(data, substr) {
			return true, nil
		}
		if exited {
			return false, fmt.Errorf("%s exited before logging %q: %w\n%s", p.Name, substr, ErrExited, p.Tail())
		}
		return false, nil
	})
}
