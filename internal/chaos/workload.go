package chaos

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// applyTimeout bounds one run of regent config apply; applyDeadline, the
// retries of one apply through faults.
const (
	applyTimeout  = 60 * time.Second
	applyDeadline = 3 * time.Minute
)

// runWorkload performs the plan's actions at their times.
func (c *campaign) runWorkload(ctx context.Context) {
	for _, a := range c.plan.Actions {
		if !c.sleepUntil(ctx, a.At) {
			return
		}
		switch a.Kind {
		case ActForce:
			c.force(a)
		case ActPush:
			c.push(a)
		case ActCancel:
			c.cancel(a)
		case ActApply:
			if err := c.apply(a.Layout, a.API, a.Master); err != nil {
				c.rec.event("apply-failed", "", "%v", err)
			}
		}
	}
}

// order returns the masters to try, starting with the first'th and
// leaving those a fault acts on to the end.
func (c *campaign) order(first int) []*master {
	var ok, held []*master
	for i := range c.masters {
		m := c.masters[(first+i)%len(c.masters)]
		if m.isHeld() {
			held = append(held, m)
		} else {
			ok = append(ok, m)
		}
	}
	return append(ok, held...)
}

// call makes one API request and returns the status and body.
func (c *campaign) call(method, url, body string) (int, []byte, error) {
	return c.callWith(method, url, body, nil)
}

// callWith is call with more headers.
func (c *campaign) callWith(method, url, body string, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// force forces a build of a builder of the configuration last applied.
func (c *campaign) force(a Action) {
	c.mu.Lock()
	names := c.plan.Layouts[c.layout].Names()
	c.mu.Unlock()
	builder := names[a.Pick%len(names)]
	for _, m := range c.order(a.Master) {
		code, body, err := c.call("POST", m.base()+"/api/v1/builders/"+builder+"/force", `{"reason": "chaos"}`)
		if err != nil {
			continue
		}
		if code != http.StatusCreated {
			c.rec.event("force-refused", m.name, "%s: %d %s", builder, code, bytes.TrimSpace(body))
			return
		}
		var bs struct {
			Requests []struct {
				ID int64 `json:"id"`
			} `json:"requests"`
		}
		if err := json.Unmarshal(body, &bs); err != nil || len(bs.Requests) == 0 {
			c.rec.event("force-refused", m.name, "%s: undecodable answer %q", builder, body)
			return
		}
		now := time.Now()
		for _, r := range bs.Requests {
			c.rec.with(func(h *History) {
				h.Forces = append(h.Forces, Force{At: now, Via: m.name, Builder: builder, Request: r.ID})
			})
			c.mu.Lock()
			c.forced = append(c.forced, r.ID)
			c.mu.Unlock()
			c.rec.event("force", m.name, "%s: request %d", builder, r.ID)
		}
		return
	}
	c.rec.event("force-failed", "", "%s: no master answered", builder)
}

// push commits to the watched branch and, for half the pushes, tells one
// or two masters about it with a signed webhook delivery too, so that
// the poller and the webhooks race to record the same change.
func (c *campaign) push(a Action) {
	c.mu.Lock()
	c.pushes++
	n := c.pushes
	c.mu.Unlock()
	old, _ := c.git("rev-parse", "HEAD")
	rev, err := c.commit(fmt.Sprintf("p%d", n))
	if err != nil {
		c.rec.event("push-failed", "", "%v", err)
		return
	}
	now := time.Now()
	c.rec.with(func(h *History) { h.Pushes = append(h.Pushes, Push{At: now, Revision: rev}) })
	c.rec.event("push", "", "revision %.10s", rev)
	if a.Pick%2 == 0 {
		return
	}
	body := fmt.Sprintf(`{"repository": "app", "branch": "main", "old_revision": %q, "revision": %q}`, old, rev)
	mac := hmac.New(sha256.New, []byte(c.hookSecret()))
	mac.Write([]byte(body))
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for i, m := range c.order(a.Master) {
		if i > a.Pick%4/2 {
			break
		}
		code, answer, err := c.callWith("POST", m.base()+"/api/v1/hooks/generic", body,
			map[string]string{"X-Regent-Signature": sig, "X-Regent-Delivery": fmt.Sprintf("push-%d", n)})
		if err != nil {
			c.rec.event("webhook-failed", m.name, "revision %.10s: %v", rev, err)
			continue
		}
		c.rec.event("webhook", m.name, "revision %.10s: %d %s", rev, code, bytes.TrimSpace(answer))
	}
}

func (c *campaign) hookSecret() string { return "hook-secret-" + strconv.FormatInt(c.cfg.Seed, 10) }

// cancel cancels one of the last twenty requests forced: the request if
// it is pending, else its build.
func (c *campaign) cancel(a Action) {
	c.mu.Lock()
	forced := c.forced[max(0, len(c.forced)-20):]
	var id int64
	if len(forced) > 0 {
		id = forced[len(forced)-1-a.Pick%len(forced)]
	}
	c.mu.Unlock()
	if id == 0 {
		return
	}
	for _, m := range c.order(a.Master) {
		code, body, err := c.call("GET", fmt.Sprintf("%s/api/v1/requests/%d", m.base(), id), "")
		if err != nil || code != http.StatusOK {
			continue
		}
		var r struct {
			State string `json:"state"`
			Build *int64 `json:"build"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			continue
		}
		path, what := fmt.Sprintf("/api/v1/requests/%d/cancel", id), fmt.Sprintf("request %d", id)
		if r.Build != nil {
			path, what = fmt.Sprintf("/api/v1/builds/%d/cancel", *r.Build), fmt.Sprintf("build %d", *r.Build)
		}
		code, body, err = c.call("POST", m.base()+path, `{"reason": "chaos cancel"}`)
		if err != nil {
			c.rec.event("cancel-failed", m.name, "%s: %v", what, err)
		} else {
			c.rec.event("cancel", m.name, "%s (%s): %d %s", what, r.State, code, bytes.TrimSpace(body))
		}
		return
	}
}

// apply applies layout i with regent config apply, through the API of
// master first if api is set (and first is a master), else straight to
// the database; a failure through the API is retried straight to the
// database, until it succeeds or the apply deadline passes.
func (c *campaign) apply(i int, api bool, first int) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	l := c.plan.Layouts[i]
	dir := filepath.Join(c.dir, fmt.Sprintf("config-%d", i))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	star := l.Render(renderEnv{RepoURL: "file://" + c.repo, MarkDir: c.markDir, Workers: c.plan.Workers,
		Spare: c.plan.SpareWorker})
	if err := os.WriteFile(filepath.Join(dir, "regent.star"), []byte(star), 0o644); err != nil {
		return err
	}
	started := time.Now()
	deadline := started.Add(applyDeadline)
	for attempt := 0; ; attempt++ {
		args := []string{"config", "apply", dir, "--db", c.dbURL, "--secrets-dir", c.secrets}
		via := "database"
		if api && attempt == 0 && first >= 0 {
			m := c.order(first)[0]
			args, via = []string{"config", "apply", dir, "--api", m.base()}, m.name
		}
		out, err := c.runRegent(args...)
		if err == nil {
			c.applied(i, l, started, via)
			return nil
		}
		c.rec.event("apply-retry", via, "layout %d: %v: %s", i, err, tailLines(out, 3))
		if time.Now().After(deadline) {
			return fmt.Errorf("apply layout %d: %w", i, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// applied records an apply that succeeded.
func (c *campaign) applied(i int, l Layout, started time.Time, via string) {
	now := time.Now()
	workers := slices.Clone(c.plan.Workers)
	if l.Spare {
		workers = append(workers, c.plan.SpareWorker)
	}
	slices.Sort(workers)
	c.rec.with(func(h *History) {
		h.Applies = append(h.Applies, Apply{Started: started, At: now, Via: via, Builders: l.Names(),
			Workers: workers, Services: campaignServices})
	})
	c.mu.Lock()
	c.layout = i
	c.mu.Unlock()
	c.rec.event("apply", via, "layout %d: builders %v, spare worker %v", i, l.Names(), l.Spare)
}

// runRegent runs the regent binary and returns its combined output.
func (c *campaign) runRegent(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.regent, args...)
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("regent %s: timed out after %s", args[0], applyTimeout)
	}
	return string(out), err
}
