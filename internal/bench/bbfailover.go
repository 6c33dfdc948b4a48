package bench

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// bbChangeSourceOwner returns the base directory of the master that the
// master m shows running the poller, or "" if none.
func bbChangeSourceOwner(ctx context.Context, m *bbMaster) (string, error) {
	var l struct {
		ChangeSources []struct {
			Master *struct {
				Name string `json:"name"`
			} `json:"master"`
		} `json:"changesources"`
	}
	if err := getJSON(ctx, m.base()+"/api/v2/changesources", &l); err != nil {
		return "", err
	}
	if len(l.ChangeSources) == 0 || l.ChangeSources[0].Master == nil {
		return "", nil
	}
	// A master's name is HOST:BASEDIR.
	_, dir, _ := strings.Cut(l.ChangeSources[0].Master.Name, ":")
	return dir, nil
}

// bbRecorded reports whether master m shows a change of revision rev.
func bbRecorded(ctx context.Context, m *bbMaster, rev string) (bool, error) {
	var l struct {
		Changes []struct {
			Revision string `json:"revision"`
		} `json:"changes"`
	}
	if err := getJSON(ctx, m.base()+"/api/v2/changes?order=-changeid&limit=20", &l); err != nil {
		return false, err
	}
	for _, c := range l.Changes {
		if c.Revision == rev {
			return true, nil
		}
	}
	return false, nil
}

// measureBuildbotFailover starts three Buildbot masters on one PostgreSQL
// database, polling one repository every second, kills the poller's
// owner once, pushes a commit at once, and adds the time until another
// master runs the poller and until the commit is recorded.
func measureBuildbotFailover(ctx context.Context, env *env, timeout time.Duration, run *Run) error {
	lab, err := env.lab("bb-failover")
	if err != nil {
		return err
	}
	defer lab.Close()
	db, err := env.database(ctx, lab, "postgres", "bbfailover")
	if err != nil {
		return err
	}
	dbURL, err := sqlAlchemyURL(db)
	if err != nil {
		return err
	}
	repo, err := newGitRepo(ctx, lab)
	if err != nil {
		return err
	}
	site := &buildbotSite{lab: lab, scripts: env.buildbotScripts, dbURL: dbURL}
	var masters []*bbMaster
	for _, name := range []string{"m1", "m2", "m3"} {
		m, err := site.newMaster(ctx, name, "--multi-master", "--poll-repo", repo.bare, "--workers", "1")
		if err != nil {
			return err
		}
		if err := m.start(ctx, 5*time.Minute); err != nil {
			return err
		}
		masters = append(masters, m)
	}
	live := func(not *bbMaster) *bbMaster {
		for _, m := range masters {
			if m != not && !m.proc.Exited() {
				return m
			}
		}
		return nil
	}

	// Settle: the poller has an owner and records a commit pushed now.
	rev, err := repo.push(ctx)
	if err != nil {
		return err
	}
	var victim *bbMaster
	err = poll(ctx, 5*time.Minute, func() (bool, error) {
		dir, err := bbChangeSourceOwner(ctx, masters[0])
		if err != nil || dir == "" {
			return false, err
		}
		for _, m := range masters {
			if m.dir == dir {
				victim = m
			}
		}
		if victim == nil {
			return false, fmt.Errorf("the poller runs on %s, none of the masters started", dir)
		}
		return bbRecorded(ctx, masters[0], rev)
	})
	if err != nil {
		return fmt.Errorf("wait for Buildbot's poller to record a commit: %w", err)
	}

	if err := victim.proc.Kill(); err != nil {
		return err
	}
	fault := time.Now()
	if rev, err = repo.push(ctx); err != nil {
		return err
	}
	var moved, recorded time.Duration
	deadline := fault.Add(timeout)
	for moved == 0 || recorded == 0 {
		if time.Now().After(deadline) {
			break
		}
		m := live(victim)
		if moved == 0 {
			dir, err := bbChangeSourceOwner(ctx, m)
			if err != nil {
				return err
			}
			if dir != "" && dir != victim.dir {
				moved = time.Since(fault)
			}
		}
		if recorded == 0 {
			ok, err := bbRecorded(ctx, m, rev)
			if err != nil {
				return err
			}
			if ok {
				recorded = time.Since(fault)
			}
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	group := failoverGroup
	for _, f := range []struct {
		id, name string
		took     time.Duration
	}{
		{"failover.crash.moved", "SIGKILL: another master owns the poller", moved},
		{"failover.crash.recorded", "SIGKILL: a commit pushed at the fault is recorded", recorded},
	} {
		fig := Figure{ID: f.id, Group: group, Name: f.name, System: SystemBuildbot, Unit: "s", Better: LowerIsBetter}
		if f.took == 0 {
			run.Missing(fig, fmt.Sprintf("not within %v", timeout))
			continue
		}
		run.Add(fig, []float64{f.took.Seconds()})
	}
	return nil
}
