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

// bbCluster is three Buildbot masters on one PostgreSQL database, polling
// one repository every second.
type bbCluster struct {
	masters []*bbMaster
	repo    *gitRepo
}

// startBBCluster starts the cluster in lab.
func startBBCluster(ctx context.Context, env *env, lab *Lab) (*bbCluster, error) {
	db, err := env.database(ctx, lab, "postgres", "bbfailover")
	if err != nil {
		return nil, err
	}
	dbURL, err := sqlAlchemyURL(db)
	if err != nil {
		return nil, err
	}
	c := &bbCluster{}
	if c.repo, err = newGitRepo(ctx, lab); err != nil {
		return nil, err
	}
	site := &buildbotSite{lab: lab, scripts: env.buildbotScripts, dbURL: dbURL}
	for _, name := range []string{"m1", "m2", "m3"} {
		m, err := site.newMaster(ctx, name, "--multi-master", "--poll-repo", c.repo.bare, "--workers", "1")
		if err != nil {
			return nil, err
		}
		if err := m.start(ctx, 5*time.Minute); err != nil {
			return nil, err
		}
		c.masters = append(c.masters, m)
	}
	return c, nil
}

// settle waits until the poller has an owner and has recorded a commit
// pushed now, and returns the owner.
func (c *bbCluster) settle(ctx context.Context) (*bbMaster, error) {
	rev, err := c.repo.push(ctx)
	if err != nil {
		return nil, err
	}
	var owner *bbMaster
	err = poll(ctx, 5*time.Minute, func() (bool, error) {
		dir, err := bbChangeSourceOwner(ctx, c.masters[0])
		if err != nil || dir == "" {
			return false, err
		}
		for _, m := range c.masters {
			if m.dir == dir {
				owner = m
			}
		}
		if owner == nil {
			return false, fmt.Errorf("the poller runs on %s, none of the masters started", dir)
		}
		return bbRecorded(ctx, c.masters[0], rev)
	})
	if err != nil {
		return nil, fmt.Errorf("wait for Buildbot's poller to record a commit: %w", err)
	}
	return owner, nil
}

// crash kills the poller's owner, pushes a commit at once, and asks
// another master every second, at most timeout, until another master
// runs the poller and the commit is recorded. A time not reached is zero.
func (c *bbCluster) crash(ctx context.Context, timeout time.Duration) (failoverTimes, error) {
	victim, err := c.settle(ctx)
	if err != nil {
		return failoverTimes{}, err
	}
	if err := victim.proc.Kill(); err != nil {
		return failoverTimes{}, err
	}
	fault := time.Now()
	rev, err := c.repo.push(ctx)
	if err != nil {
		return failoverTimes{}, err
	}
	other := c.masters[0]
	if other == victim {
		other = c.masters[1]
	}
	var res failoverTimes
	for (res.moved == 0 || res.recorded == 0) && time.Since(fault) < timeout {
		if res.moved == 0 {
			dir, err := bbChangeSourceOwner(ctx, other)
			if err != nil {
				return failoverTimes{}, err
			}
			if dir != "" && dir != victim.dir {
				res.moved = time.Since(fault)
			}
		}
		if res.recorded == 0 {
			ok, err := bbRecorded(ctx, other, rev)
			if err != nil {
				return failoverTimes{}, err
			}
			if ok {
				res.recorded = time.Since(fault)
			}
		}
		if err := sleep(ctx, time.Second); err != nil {
			return failoverTimes{}, err
		}
	}
	return res, nil
}

// measureBuildbotFailover runs one crash trial on a fresh Buildbot
// cluster and adds its figures; a time not reached within timeout is
// recorded as not measured.
func measureBuildbotFailover(ctx context.Context, env *env, timeout time.Duration, run *Run) error {
	lab, err := env.lab("bb-failover")
	if err != nil {
		return err
	}
	defer lab.Close()
	c, err := startBBCluster(ctx, env, lab)
	if err != nil {
		return err
	}
	res, err := c.crash(ctx, timeout)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		id, name string
		took     time.Duration
	}{
		{"failover.crash.moved", "SIGKILL: another master owns the poller", res.moved},
		{"failover.crash.recorded", "SIGKILL: a commit pushed at the fault is recorded", res.recorded},
	} {
		fig := Figure{ID: f.id, Group: failoverGroup, Name: f.name, System: SystemBuildbot, Unit: "s",
			Better: LowerIsBetter}
		if f.took == 0 {
			run.Missing(fig, fmt.Sprintf("not within %v", timeout))
			continue
		}
		run.Add(fig, []float64{f.took.Seconds()})
	}
	return nil
}
