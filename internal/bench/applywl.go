package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// measureLargeApply measures `regent config apply` of the large
// configuration (1,000 builders, 200 workers, 300 schedulers) on db
// ("sqlite" or "postgres"): first into an empty database, then the
// change of ten of each kind, back and forth, through a running master.
func measureLargeApply(ctx context.Context, env *env, db string, firstRuns, changeRuns int, run *Run) error {
	group := "Apply: 1,000 builders, 200 workers, 300 schedulers"
	var first []float64
	var site *regentSite
	for i := range firstRuns {
		lab, err := env.lab(fmt.Sprintf("apply-%s-%d", db, i))
		if err != nil {
			return err
		}
		defer lab.Close()
		dbURL, err := env.database(ctx, lab, db, "apply")
		if err != nil {
			return err
		}
		if site, err = newRegentSite(env.regentBin, lab, dbURL); err != nil {
			return err
		}
		if err := site.writeConfig(largeStar(false)); err != nil {
			return err
		}
		took, err := site.applyDB(ctx)
		if err != nil {
			return err
		}
		first = append(first, took.Seconds())
	}
	run.Add(Figure{ID: "apply.large.first." + db, Group: group, System: SystemRegent,
		Name: "first apply into an empty database (" + db + "), CLI --db", Unit: "s", Better: LowerIsBetter}, first)

	m, err := site.startMaster(ctx, "m1")
	if err != nil {
		return err
	}
	cli, visible, err := measureRegentReconfig(ctx, site, m, largeStar, "b0000", changeRuns)
	if err != nil {
		return err
	}
	run.Add(Figure{ID: "apply.large.change.cli." + db, Group: group, System: SystemRegent,
		Name: "change of 10 of each kind (" + db + "), CLI --api, command time", Unit: "s", Better: LowerIsBetter}, cli)
	run.Add(Figure{ID: "apply.large.change." + db, Group: group, System: SystemRegent,
		Name: "change of 10 of each kind (" + db + "), until the builders list shows it", Unit: "s",
		Better: LowerIsBetter}, visible)
	return nil
}

// measureRegentReconfig applies star(true) and star(false) in turn,
// runs times, with `regent config apply --api` through master m, and
// returns, per apply, the command's time and the time until the master
// shows the renamed builder (or, going back, kept) as active.
func measureRegentReconfig(ctx context.Context, site *regentSite, m *regentMaster, star func(bool) string,
	kept string, runs int) (cli, visible []float64, err error) {
	for i := range runs {
		shift := i%2 == 0
		if err := site.writeConfig(star(shift)); err != nil {
			return nil, nil, err
		}
		start := time.Now()
		took, err := site.applyAPI(ctx, m)
		if err != nil {
			return nil, nil, err
		}
		want := kept
		if shift {
			want = "renamed0000"
		}
		if err := waitBuilders(ctx, m.base(), want); err != nil {
			return nil, nil, err
		}
		cli = append(cli, took.Seconds())
		visible = append(visible, time.Since(start).Seconds())
	}
	return cli, visible, nil
}

// waitBuilders waits until the master at base shows builder want as
// active. A generation is applied in one transaction, so the rest of the
// change shows at the same moment; asking for one builder keeps the
// polling from loading the master it measures.
func waitBuilders(ctx context.Context, base, want string) error {
	err := poll(ctx, 2*time.Minute, func() (bool, error) {
		var b struct {
			Name    string `json:"name"`
			Retired *int64 `json:"retired_generation"`
		}
		err := getJSON(ctx, base+"/api/v1/builders/"+want, &b)
		if errors.Is(err, errNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return b.Name == want && b.Retired == nil, nil
	})
	if err != nil {
		return fmt.Errorf("wait for builder %s to show: %w", want, err)
	}
	return nil
}
