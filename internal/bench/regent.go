package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// regentSite is one Regent installation inside a lab: a database, a
// configuration directory, and the masters and workers started on them.
type regentSite struct {
	bin     string
	lab     *Lab
	db      string
	cfgDir  string
	pwFile  string
	masters []*regentMaster
}

// regentMaster is one master process of a site, restartable under the
// same name and address.
type regentMaster struct {
	site *regentSite
	name string
	addr string
	args []string
	runs int
	proc *Proc
}

// newRegentSite prepares a site on db, a SQLite path or a postgres:// URL.
func newRegentSite(bin string, lab *Lab, db string) (*regentSite, error) {
	s := &regentSite{bin: bin, lab: lab, db: db, cfgDir: lab.Path("config"), pwFile: lab.Path("worker.pw")}
	if err := os.MkdirAll(s.cfgDir, 0o755); err != nil {
		return nil, fmt.Errorf("make configuration directory: %w", err)
	}
	if err := os.WriteFile(s.pwFile, []byte(workerPassword+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write worker password: %w", err)
	}
	return s, nil
}

// writeConfig replaces the site's regent.star.
func (s *regentSite) writeConfig(star string) error {
	return writeAtomic(s.lab.Path("config", "regent.star"), []byte(star))
}

// applyDB applies the configuration directory straight to the database
// with the CLI, and returns how long the command took.
func (s *regentSite) applyDB(ctx context.Context) (time.Duration, error) {
	return s.runRegent(ctx, "config", "apply", s.cfgDir, "--db", s.db)
}

// applyAPI applies the configuration directory through master m with the
// CLI, and returns how long the command took.
func (s *regentSite) applyAPI(ctx context.Context, m *regentMaster) (time.Duration, error) {
	return s.runRegent(ctx, "config", "apply", s.cfgDir, "--api", m.base())
}

func (s *regentSite) runRegent(ctx context.Context, args ...string) (time.Duration, error) {
	start := time.Now()
	if _, err := runCommand(ctx, s.lab.Dir, nil, s.bin, args...); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// startMaster starts a master named name with extra flags and waits until
// it serves.
func (s *regentSite) startMaster(ctx context.Context, name string, extra ...string) (*regentMaster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &regentMaster{site: s, name: name, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	m.args = append([]string{"master", "--db", s.db, "--name", name, "--listen", m.addr,
		"--data-dir", s.lab.Path("data-" + name)}, extra...)
	s.masters = append(s.masters, m)
	return m, m.restart(ctx)
}

// restart starts the master's process again, as a new incarnation.
func (m *regentMaster) restart(ctx context.Context) error {
	m.runs++
	p, err := m.site.lab.Start(fmt.Sprintf("%s-run%d", m.name, m.runs), m.site.bin, m.args, nil, "")
	if err != nil {
		return err
	}
	m.proc = p
	if err := p.WaitForLine(ctx, "master started", time.Minute); err != nil {
		return fmt.Errorf("start master %s: %w", m.name, err)
	}
	return nil
}

func (m *regentMaster) base() string { return "http://" + m.addr }

// startWorkers starts one worker process per name against master m and
// waits until the master shows them all connected.
func (s *regentSite) startWorkers(ctx context.Context, m *regentMaster, names []string) error {
	for _, name := range names {
		args := []string{"worker", "--master", m.base(), "--name", name,
			"--password-file", s.pwFile, "--basedir", s.lab.Path("worker-" + name)}
		if _, err := s.lab.Start("worker-"+name, s.bin, args, nil, ""); err != nil {
			return err
		}
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	err := poll(ctx, time.Minute, func() (bool, error) {
		var l struct {
			Items []struct{ Name, State string }
		}
		if err := getJSON(ctx, m.base()+"/api/v1/workers", &l); err != nil {
			return false, err
		}
		n := 0
		for _, w := range l.Items {
			if want[w.Name] && (w.State == "idle" || w.State == "busy") {
				n++
			}
		}
		return n == len(names), nil
	})
	if err != nil {
		return fmt.Errorf("wait for %d workers to connect: %w", len(names), err)
	}
	return nil
}

// regentDispatcher drives the dispatch workload through a master's REST
// API.
type regentDispatcher struct{ base string }

func (d regentDispatcher) force(ctx context.Context, builder string) (int64, error) {
	var bs struct {
		Requests []struct{ ID int64 } `json:"requests"`
	}
	err := postJSON(ctx, d.base+"/api/v1/builders/"+url.PathEscape(builder)+"/force",
		map[string]string{"reason": "benchmark"}, &bs)
	if err != nil {
		return 0, err
	}
	if len(bs.Requests) != 1 {
		return 0, fmt.Errorf("force %s: %d build requests, want 1", builder, len(bs.Requests))
	}
	return bs.Requests[0].ID, nil
}

// regentRequest and regentStep are the parts of a build request and a
// step the workloads read.
type regentRequest struct {
	State       string     `json:"state"`
	Build       *int64     `json:"build"`
	CompletedAt *time.Time `json:"completed_at"`
}

type regentStep struct {
	Number     int        `json:"number"`
	LogSize    int64      `json:"log_size"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

func (d regentDispatcher) outcomes(ctx context.Context, ids []int64) (map[int64]outcome, bool, error) {
	// Many requests are waited for with two cheap questions, so that the
	// polling does not load the master it measures; the workload runs on a
	// master of its own, so no other request can be pending.
	if len(ids) > 1 {
		for _, state := range []string{"pending", "claimed"} {
			var l struct{ Items []struct{ ID int64 } }
			if err := getJSON(ctx, d.base+"/api/v1/requests?limit=1&state="+state, &l); err != nil {
				return nil, false, err
			}
			if len(l.Items) > 0 {
				return nil, false, nil
			}
		}
	}
	out, err := fetchAll(ctx, ids, 8, func(ctx context.Context, id int64) (outcome, error) {
		var r regentRequest
		if err := getJSON(ctx, fmt.Sprintf("%s/api/v1/requests/%d", d.base, id), &r); err != nil {
			return outcome{}, err
		}
		if r.State != "complete" || r.Build == nil || r.CompletedAt == nil {
			return outcome{}, errNotYet
		}
		var steps struct{ Items []regentStep }
		if err := getJSON(ctx, fmt.Sprintf("%s/api/v1/builds/%d/steps", d.base, *r.Build), &steps); err != nil {
			return outcome{}, err
		}
		if len(steps.Items) == 0 || steps.Items[0].StartedAt == nil {
			return outcome{}, fmt.Errorf("build %d of request %d finished without a started step", *r.Build, id)
		}
		return outcome{stepStarted: *steps.Items[0].StartedAt, finished: *r.CompletedAt}, nil
	})
	if errors.Is(err, errNotYet) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// regentOwner returns the owner of a clustered service as master m shows
// it, "" if none, and whether the service has polled successfully.
func regentOwner(ctx context.Context, m *regentMaster, service string) (owner string, polled bool, err error) {
	var l struct {
		Items []struct {
			Name        string  `json:"name"`
			Owner       *string `json:"owner"`
			LastSuccess *string `json:"last_success"`
		}
	}
	if err := getJSON(ctx, m.base()+"/api/v1/services", &l); err != nil {
		return "", false, err
	}
	for _, s := range l.Items {
		if s.Name == service && s.Owner != nil {
			return *s.Owner, s.LastSuccess != nil, nil
		}
	}
	return "", false, nil
}

// regentRecorded reports whether master m shows a change of revision rev.
func regentRecorded(ctx context.Context, m *regentMaster, rev string) (bool, error) {
	var l struct {
		Items []struct{ Revision string } `json:"items"`
	}
	if err := getJSON(ctx, m.base()+"/api/v1/changes?limit=20", &l); err != nil {
		return false, err
	}
	for _, c := range l.Items {
		if strings.EqualFold(c.Revision, rev) {
			return true, nil
		}
	}
	return false, nil
}
