package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/testutil/proxy"
)

// runFaults injects the plan's faults at their times; each is healed by
// a goroutine of its own after its duration, or at once when the
// campaign's time is up.
func (c *campaign) runFaults(ctx context.Context) {
	for _, f := range c.plan.Faults {
		if !c.sleepUntil(ctx, f.At) {
			return
		}
		heal, target, link, err := c.inject(f)
		if err != nil {
			c.rec.event("fault-skipped", target, "%s: %v", f.Kind, err)
			continue
		}
		var idx int
		start := time.Now()
		detail := faultDetail(f)
		if link != "" {
			detail = "to " + link + ", " + detail
		}
		c.rec.with(func(h *History) {
			h.Faults = append(h.Faults, FaultRun{Kind: f.Kind, Target: target, Link: link, Start: start, Detail: detail})
			idx = len(h.Faults) - 1
		})
		c.rec.event("fault", target, "%s %s", f.Kind, detail)
		c.healing.Add(1)
		go func() {
			defer c.healing.Done()
			timer := time.NewTimer(f.For)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
			timer.Stop()
			err := heal()
			end := time.Now()
			c.rec.with(func(h *History) { h.Faults[idx].End = end })
			if err != nil {
				c.rec.event("heal-failed", target, "%s: %v", f.Kind, err)
			} else {
				c.rec.event("healed", target, "%s after %s", f.Kind, end.Sub(start).Round(time.Millisecond))
			}
		}()
	}
}

func faultDetail(f Fault) string {
	switch f.Kind {
	case MasterDelay, WorkerDelay:
		return fmt.Sprintf("for %s, %s per chunk", f.For.Round(time.Millisecond), f.Delay.Round(time.Millisecond))
	case MasterTerm, WorkerTerm:
		return fmt.Sprintf("restarted %s after it ends", f.For.Round(time.Millisecond))
	case PostgresRestart:
		if f.Crash {
			return fmt.Sprintf("crash, down for %s", f.For.Round(time.Millisecond))
		}
		return fmt.Sprintf("stop, down for %s", f.For.Round(time.Millisecond))
	}
	return "for " + f.For.Round(time.Millisecond).String()
}

// masterTarget picks the master a fault hits: a given one, the current
// owner of one of the campaign's services, or the supervisor, as i says
// (see masterTargets); the database tells who owns what, and when it
// cannot, master i%3 is hit.
func (c *campaign) masterTarget(i int) *master {
	var name string
	if j := i - len(c.masters); j >= 0 {
		_ = c.query(func(conn *pgx.Conn) error {
			ctx := context.Background()
			if j < len(campaignServices) {
				return conn.QueryRow(ctx, `SELECT m.name FROM services s JOIN masters m ON m.id = s.owner
					WHERE s.name = $1`, campaignServices[j]).Scan(&name)
			}
			return conn.QueryRow(ctx, `SELECT m.name FROM leases l JOIN masters m ON m.id = l.holder
				WHERE l.name = 'supervisor'`).Scan(&name)
		})
	}
	for _, m := range c.masters {
		if m.name == name {
			return m
		}
	}
	return c.masters[i%len(c.masters)]
}

// workerTarget picks the worker a fault hits: the i'th of those running
// a build at the moment, so that faults catch builds in flight, or the
// i'th of all if none is busy (or the database cannot tell).
func (c *campaign) workerTarget(i int) *node {
	var busy []string
	_ = c.query(func(conn *pgx.Conn) error {
		rows, err := conn.Query(context.Background(), `SELECT DISTINCT w.name FROM builds b
			JOIN workers w ON w.id = b.worker_id WHERE b.state = 'running' ORDER BY w.name`)
		if err != nil {
			return err
		}
		busy, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	busy = slices.DeleteFunc(busy, func(name string) bool { return !slices.Contains(c.plan.Workers, name) })
	if len(busy) > 0 {
		name := busy[i%len(busy)]
		for _, w := range c.workers {
			if w.name == name {
				return w
			}
		}
	}
	return c.workers[i%len(c.plan.Workers)]
}

// healAll waits until every fault has been healed.
func (c *campaign) healAll() { c.healing.Wait() }

// termTimeout bounds the wait for a process to end after SIGTERM: a
// master's drain (10 s at most) or a worker's stop, with a margin.
const termTimeout = 20 * time.Second

// inject starts fault f and returns how to heal it, the name of what it
// hit and, for a fault on a worker's links, the master cut off or "all".
func (c *campaign) inject(f Fault) (heal func() error, target, link string, err error) {
	if f.Kind == PostgresRestart {
		heal, target, err = c.injectPostgres(f)
		return heal, target, "", err
	}
	var n *node
	var m *master
	if f.Kind.onMaster() {
		m = c.masterTarget(f.Target)
		n = &m.node
	} else {
		n = c.workerTarget(f.Target)
	}
	n.mu.Lock()
	busy := n.held || n.proc == nil || n.proc.Exited()
	if !busy {
		n.held = true
	}
	n.mu.Unlock()
	if busy {
		return nil, n.name, "", fmt.Errorf("%s is down or already under a fault", n.name)
	}
	release := func(err error) error {
		n.mu.Lock()
		n.held = false
		n.mu.Unlock()
		return err
	}

	switch f.Kind {
	case MasterKill:
		err = m.kill()
		heal = func() error { return release(m.startMaster(c.t)) }
	case WorkerKill:
		err = n.kill()
		heal = func() error { n.start(c.t); return release(nil) }
	case MasterTerm:
		err = m.terminate()
		heal = func() error {
			stopErr := m.awaitExit(termTimeout)
			return release(errors.Join(stopErr, m.startMaster(c.t)))
		}
	case WorkerTerm:
		err = n.terminate()
		heal = func() error {
			stopErr := n.awaitExit(termTimeout)
			n.start(c.t)
			return release(stopErr)
		}
	case WorkerBlackhole, WorkerDelay, WorkerReset:
		var links []*proxy.Proxy
		links, link = c.links(n, f.Link)
		for _, l := range links {
			switch f.Kind {
			case WorkerBlackhole:
				l.Blackhole()
			case WorkerDelay:
				l.Delay(f.Delay)
			default:
				l.Reset()
			}
		}
		heal = func() error {
			for _, l := range links {
				l.Pass()
			}
			return release(nil)
		}
	case MasterPause, WorkerPause:
		err = n.pause()
		heal = func() error { return release(n.resume()) }
	case MasterBlackhole:
		m.proxy.Blackhole()
		heal = func() error { m.proxy.Pass(); return release(nil) }
	case MasterDelay:
		m.proxy.Delay(f.Delay)
		heal = func() error { m.proxy.Pass(); return release(nil) }
	case MasterReset:
		m.proxy.Reset()
		heal = func() error { m.proxy.Pass(); return release(nil) }
	default:
		err = fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if err != nil {
		return nil, n.name, link, release(err)
	}
	return heal, n.name, link, nil
}

// links returns the worker's links that a fault with the given link
// target cuts (see linkAll and linkDispatcher), and names them: a
// master's name, or "all".
func (c *campaign) links(w *node, target int) ([]*proxy.Proxy, string) {
	if target == linkAll {
		return w.links, "all"
	}
	i := target
	if target == linkDispatcher {
		i = 0
		var name string
		_ = c.query(func(conn *pgx.Conn) error {
			return conn.QueryRow(context.Background(), `SELECT b.master FROM builds b
				JOIN workers w ON w.id = b.worker_id WHERE w.name = $1 ORDER BY b.id DESC LIMIT 1`,
				w.name).Scan(&name)
		})
		for j, m := range c.masters {
			if m.name == name {
				i = j
			}
		}
	}
	return w.links[i : i+1], c.masters[i].name
}

// injectPostgres stops PostgreSQL, or crashes it, and returns how to start
// it again.
func (c *campaign) injectPostgres(f Fault) (func() error, string, error) {
	stop := c.pg.Stop
	if f.Crash {
		stop = c.pg.Crash
	}
	if err := stop(); err != nil {
		return nil, "postgres", err
	}
	heal := func() error {
		var err error
		for range 5 {
			if err = c.pg.Start(); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		return err
	}
	return heal, "postgres", nil
}

// runMonitor restarts, every half second, any master or worker whose
// process ended without a fault ending it: a worker that a master told to
// stop, or a process that died on its own, which is recorded.
func (c *campaign) runMonitor(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, m := range c.masters {
			if p := c.exited(&m.node); p != "" {
				c.rec.event("exit", m.name, "master ended on its own: %s", p)
				if err := m.startMaster(c.t); err != nil {
					c.rec.event("restart-failed", m.name, "%v", err)
				}
				c.release(&m.node)
			}
		}
		for _, w := range c.workers {
			if p := c.exited(w); p != "" {
				c.rec.event("exit", w.name, "worker ended: %s", p)
				w.start(c.t)
				c.release(w)
			}
		}
	}
}

// exited reports how the node's process ended, if it did while no fault
// held it; it then holds the node for the caller, who restarts it.
func (c *campaign) exited(n *node) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.held || n.proc == nil || !n.proc.Exited() {
		return ""
	}
	n.held = true
	return fmt.Sprintf("exit status %d: %s", n.proc.ExitCode(), tailLines(n.proc.Stderr(), 1))
}

func (c *campaign) release(n *node) {
	n.mu.Lock()
	n.held = false
	n.mu.Unlock()
}

// runSampler asks, every second, one working master for the services and
// the live masters, and every two seconds each working master for its
// active builders and workers.
func (c *campaign) runSampler(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.sampleServices(c.order(i)[0])
		if i%2 == 0 {
			for _, m := range c.masters {
				if !m.isHeld() {
					c.sampleLists(m)
				}
			}
		}
	}
}

// getItems fetches an API list and decodes its items into v.
func (c *campaign) getItems(url string, v any) bool {
	code, body, err := c.call("GET", url, "")
	if err != nil || code != http.StatusOK {
		return false
	}
	var list struct {
		Items json.RawMessage `json:"items"`
	}
	return json.Unmarshal(body, &list) == nil && json.Unmarshal(list.Items, v) == nil
}

// sampleServices records the services and live masters that m shows.
func (c *campaign) sampleServices(m *master) {
	var services []struct {
		Name  string  `json:"name"`
		Owner *string `json:"owner"`
		Token int64   `json:"token"`
	}
	var masters []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}
	if !c.getItems(m.base()+"/api/v1/services", &services) || !c.getItems(m.base()+"/api/v1/masters", &masters) {
		return
	}
	s := Sample{At: time.Now(), Via: m.name}
	for _, x := range masters {
		if x.State == "alive" {
			s.Live = append(s.Live, x.Name)
		}
	}
	for _, x := range services {
		owner := ""
		if x.Owner != nil {
			owner = *x.Owner
		}
		s.Services = append(s.Services, ServiceSample{Name: x.Name, Owner: owner, Token: x.Token})
	}
	c.rec.with(func(h *History) { h.Samples = append(h.Samples, s) })
}

// sampleLists records the builders and workers that m lists as active.
func (c *campaign) sampleLists(m *master) {
	var builders, workers []struct {
		Name string `json:"name"`
	}
	at := time.Now()
	if !c.getItems(m.base()+"/api/v1/builders", &builders) || !c.getItems(m.base()+"/api/v1/workers", &workers) {
		return
	}
	l := List{At: at, Answered: time.Now(), Master: m.name}
	for _, b := range builders {
		l.Builders = append(l.Builders, b.Name)
	}
	for _, w := range workers {
		l.Workers = append(l.Workers, w.Name)
	}
	slices.Sort(l.Builders)
	slices.Sort(l.Workers)
	c.rec.with(func(h *History) { h.Lists = append(h.Lists, l) })
}
