package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// gitRepo is a bare repository that pollers watch and a clone that
// pushes new commits to it, both in a lab.
type gitRepo struct {
	bare, work string
	env        []string
	n          int
}

// newGitRepo makes the repository with one commit on main.
func newGitRepo(ctx context.Context, lab *Lab) (*gitRepo, error) {
	g := &gitRepo{bare: lab.Path("repo.git"), work: lab.Path("repo-work"), env: []string{
		"GIT_CONFIG_NOSYSTEM=1", "HOME=" + lab.Dir,
		"GIT_AUTHOR_NAME=Bench", "GIT_AUTHOR_EMAIL=bench@example.invalid",
		"GIT_COMMITTER_NAME=Bench", "GIT_COMMITTER_EMAIL=bench@example.invalid"}}
	if err := g.git(ctx, lab.Dir, "init", "-q", "--bare", "-b", "main", g.bare); err != nil {
		return nil, err
	}
	if err := g.git(ctx, lab.Dir, "clone", "-q", g.bare, g.work); err != nil {
		return nil, err
	}
	if err := g.git(ctx, g.work, "checkout", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	if _, err := g.push(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// push commits a change in the clone, pushes it and returns its
// revision.
func (g *gitRepo) push(ctx context.Context) (string, error) {
	g.n++
	if err := os.WriteFile(g.work+"/counter", []byte(fmt.Sprintln(g.n)), 0o644); err != nil {
		return "", err
	}
	if err := g.git(ctx, g.work, "add", "counter"); err != nil {
		return "", err
	}
	if err := g.git(ctx, g.work, "commit", "-q", "-m", fmt.Sprintf("change %d", g.n)); err != nil {
		return "", err
	}
	if err := g.git(ctx, g.work, "push", "-q", "origin", "main"); err != nil {
		return "", err
	}
	out, err := runCommand(ctx, g.work, g.env, "git", "rev-parse", "HEAD")
	return strings.TrimSpace(out), err
}

func (g *gitRepo) git(ctx context.Context, dir string, args ...string) error {
	_, err := runCommand(ctx, dir, g.env, "git", args...)
	return err
}

// failoverTimes is what one failover trial measured.
type failoverTimes struct {
	// moved is the time from the fault to another master owning the
	// poller; recorded the time to the commit pushed just after the fault
	// being recorded as a change.
	moved, recorded time.Duration
}

// regentCluster is three Regent masters on one PostgreSQL database,
// polling one repository every second.
type regentCluster struct {
	site *regentSite
	repo *gitRepo
}

// startRegentCluster starts the cluster in lab.
func startRegentCluster(ctx context.Context, env *env, lab *Lab) (*regentCluster, error) {
	db, err := env.database(ctx, lab, "postgres", "failover")
	if err != nil {
		return nil, err
	}
	site, err := newRegentSite(env.regentBin, lab, db)
	if err != nil {
		return nil, err
	}
	repo, err := newGitRepo(ctx, lab)
	if err != nil {
		return nil, err
	}
	if err := site.writeConfig(pollerStar(repo.bare)); err != nil {
		return nil, err
	}
	if _, err := site.applyDB(ctx); err != nil {
		return nil, err
	}
	for _, name := range []string{"m1", "m2", "m3"} {
		if _, err := site.startMaster(ctx, name); err != nil {
			return nil, err
		}
	}
	return &regentCluster{site: site, repo: repo}, nil
}

const pollerService = "poller:app"

// live returns a master that is running and not the named one.
func (c *regentCluster) live(not string) *regentMaster {
	for _, m := range c.site.masters {
		if m.name != not && !m.proc.Exited() {
			return m
		}
	}
	return nil
}

// settle waits until the poller has an owner that is polling and has
// recorded a fresh commit, and returns the owner.
func (c *regentCluster) settle(ctx context.Context) (*regentMaster, error) {
	rev, err := c.repo.push(ctx)
	if err != nil {
		return nil, err
	}
	var owner string
	err = poll(ctx, time.Minute, func() (bool, error) {
		m := c.live("")
		o, polled, err := regentOwner(ctx, m, pollerService)
		if err != nil || o == "" || !polled {
			return false, err
		}
		owner = o
		return regentRecorded(ctx, m, rev)
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the poller to record a commit: %w", err)
	}
	for _, m := range c.site.masters {
		if m.name == owner {
			return m, nil
		}
	}
	return nil, fmt.Errorf("the poller's owner %q is none of the masters started", owner)
}

// trial faults the poller's owner (kill or pause), pushes a commit at
// once, and measures until another master owns the poller and the commit
// is recorded; then it brings the victim back.
func (c *regentCluster) trial(ctx context.Context, mode string, timeout time.Duration) (failoverTimes, error) {
	victim, err := c.settle(ctx)
	if err != nil {
		return failoverTimes{}, err
	}
	offset := len(victim.proc.Output())
	if mode == "crash" {
		err = victim.proc.Kill()
	} else {
		err = victim.proc.Stop()
	}
	if err != nil {
		return failoverTimes{}, err
	}
	fault := time.Now()
	rev, err := c.repo.push(ctx)
	if err != nil {
		return failoverTimes{}, err
	}
	var res failoverTimes
	err = poll(ctx, timeout, func() (bool, error) {
		m := c.live(victim.name)
		if res.moved == 0 {
			o, _, err := regentOwner(ctx, m, pollerService)
			if err != nil {
				return false, err
			}
			if o != "" && o != victim.name {
				res.moved = time.Since(fault)
			}
		}
		if res.recorded == 0 {
			ok, err := regentRecorded(ctx, m, rev)
			if err != nil {
				return false, err
			}
			if ok {
				res.recorded = time.Since(fault)
			}
		}
		return res.moved > 0 && res.recorded > 0, nil
	})
	if err != nil {
		return failoverTimes{}, fmt.Errorf("%s of %s: %w", mode, victim.name, err)
	}

	if mode == "crash" {
		return res, victim.restart(ctx)
	}
	if err := victim.proc.Cont(); err != nil {
		return failoverTimes{}, err
	}
	err = poll(ctx, time.Minute, func() (bool, error) {
		return strings.Contains(victim.proc.Output()[offset:], "joined the cluster"), nil
	})
	if err != nil {
		return failoverTimes{}, fmt.Errorf("wait for %s to rejoin after SIGCONT: %w", victim.name, err)
	}
	return res, nil
}

// measureRegentFailover runs crash and hang trials on a fresh cluster and
// adds their figures.
func measureRegentFailover(ctx context.Context, env *env, crashes, hangs int, run *Run) error {
	if ok, err := hasClusterFlags(ctx, env.regentBin); err != nil || !ok {
		for _, mode := range []string{"crash", "hang"} {
			for _, what := range []string{"moved", "recorded"} {
				run.Missing(Figure{ID: "failover." + mode + "." + what, Group: failoverGroup, System: SystemRegent,
					Name: mode + ": " + what, Unit: "s", Better: LowerIsBetter}, "needs multi-master")
			}
		}
		return err
	}
	lab, err := env.lab("failover")
	if err != nil {
		return err
	}
	defer lab.Close()
	c, err := startRegentCluster(ctx, env, lab)
	if err != nil {
		return err
	}
	group := failoverGroup
	for _, mode := range []struct {
		name, label string
		trials      int
	}{{"crash", "SIGKILL", crashes}, {"hang", "SIGSTOP, time-to-live 10s", hangs}} {
		if mode.trials == 0 {
			continue
		}
		var moved, recorded []float64
		for range mode.trials {
			t, err := c.trial(ctx, mode.name, 2*time.Minute)
			if err != nil {
				return err
			}
			moved = append(moved, t.moved.Seconds())
			recorded = append(recorded, t.recorded.Seconds())
		}
		run.Add(Figure{ID: "failover." + mode.name + ".moved", Group: group, System: SystemRegent,
			Name: mode.label + ": another master owns the poller", Unit: "s", Better: LowerIsBetter}, moved)
		run.Add(Figure{ID: "failover." + mode.name + ".recorded", Group: group, System: SystemRegent,
			Name: mode.label + ": a commit pushed at the fault is recorded", Unit: "s", Better: LowerIsBetter}, recorded)
	}
	return nil
}

// failoverGroup heads the failover figures.
const failoverGroup = "Failover: the poller's owner among 3 masters on PostgreSQL"

// hasClusterFlags reports whether `regent master` takes the flags of a
// cluster of masters, without which there is no failover to measure.
func hasClusterFlags(ctx context.Context, bin string) (bool, error) {
	out, err := runCommand(ctx, "", nil, bin, "master", "--help")
	if err != nil {
		return false, fmt.Errorf("regent master --help: %w", err)
	}
	for _, flag := range []string{"-roles", "-tags", "-ttl"} {
		if !strings.Contains(out, flag) {
			return false, nil
		}
	}
	return true, nil
}
