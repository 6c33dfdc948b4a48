package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// apiPrefix is where every master serves the worker protocol.
const apiPrefix = "/api/worker/v1"

// requestTimeout bounds every request except the long poll, so that a
// master that accepts a connection and then hangs is treated as failed.
const requestTimeout = 30 * time.Second

// maxReplySize bounds how much of an answer is read. Answers are JSON; the
// largest is a poll answer carrying several builds with their steps.
const maxReplySize = 16 << 20

// errUnavailable marks a failure of the master itself (no connection, a
// hang, a 5xx): the request may be retried on the next master.
var errUnavailable = errors.New("master unavailable")

// errSessionStopped: a master answered a build write with a stop order.
var errSessionStopped = errors.New("session stopped by the master")

// isStopOrder reports whether body is a poll answer ordering a stop.
func isStopOrder(body []byte) bool {
	if !bytes.Contains(body, []byte(`"stop"`)) {
		return false
	}
	var resp struct {
		Stop bool `json:"stop"`
	}
	return json.Unmarshal(body, &resp) == nil && resp.Stop
}

// request is one call to a master.
type request struct {
	method string
	path   string // below apiPrefix
	query  url.Values
	header http.Header
	body   []byte
	// basic sends the worker's name and password instead of the session
	// token; only the login does.
	basic   bool
	token   string
	timeout time.Duration
}

// reply is a master's answer that was not a failure of the master.
type reply struct {
	status int
	body   []byte
	master string
}

// errorText returns the message of a workerapi.Error body, or the raw body.
func (r reply) errorText() string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(r.body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(bytes.TrimSpace(r.body))
}

// masterClient talks to whichever of the listed masters answers. Every
// master serves the same cluster, so a session token from one is valid on
// all of them; the client sticks to one master until it fails and then
// moves on to the next.
type masterClient struct {
	masters  []string
	hc       *http.Client
	log      *slog.Logger
	name     string
	password string

	// timeout bounds every request but the poll (nanoseconds); it is
	// derived from how long the master holds polls, which the master
	// sets from the worker time-to-live (see useHold).
	timeout atomic.Int64
	current atomic.Int64 // index into masters, modulo its length
	failing atomic.Bool  // the last request failed; log the recovery

	mu      sync.Mutex
	token   string        // "" while there is no session
	changed chan struct{} // closed when token changes
	onDrop  func(token string)
}

func newMasterClient(cfg *Config, log *slog.Logger) *masterClient {
	return &masterClient{
		masters:  cfg.Masters,
		hc:       cfg.HTTPClient,
		log:      log,
		name:     cfg.Name,
		password: cfg.Password,
		changed:  make(chan struct{}),
	}
}

// session returns the current session token ("" for none) and a channel
// that is closed when it changes.
func (c *masterClient) session() (string, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token, c.changed
}

// setSession installs a new session token and wakes everyone waiting.
func (c *masterClient) setSession(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
	close(c.changed)
	c.changed = make(chan struct{})
}

// dropSession forgets token after a master refused it, unless a newer
// session has replaced it already. The poll loop logs in again.
func (c *masterClient) dropSession(token string) {
	c.mu.Lock()
	if c.token != token || token == "" {
		c.mu.Unlock()
		return
	}
	c.token = ""
	close(c.changed)
	c.changed = make(chan struct{})
	onDrop := c.onDrop
	c.mu.Unlock()
	if onDrop != nil {
		onDrop(token)
	}
}

// do makes one attempt at the current master. A connection failure, a
// timeout or a 5xx moves the client on to the next master and returns an
// error wrapping errUnavailable; any other answer is returned as a reply.
// When ctx ends, do returns its cause.
func (c *masterClient) do(ctx context.Context, r request) (reply, error) {
	idx := c.current.Load()
	master := c.masters[int(idx%int64(len(c.masters)))]

	timeout := r.timeout
	if timeout == 0 {
		timeout = requestTimeout
		if t := time.Duration(c.timeout.Load()); t > 0 {
			timeout = t
		}
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	u := master + apiPrefix + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(rctx, r.method, u, bytes.NewReader(r.body))
	if err != nil {
		return reply{}, fmt.Errorf("build request to %s: %w", u, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.basic {
		req.SetBasicAuth(c.name, c.password)
	} else if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, c.failed(ctx, idx, master, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplySize))
	resp.Body.Close()
	if err != nil {
		return reply{}, c.failed(ctx, idx, master, fmt.Errorf("read answer: %w", err))
	}
	rep := reply{status: resp.StatusCode, body: body, master: master}
	if retryableStatus(resp.StatusCode) {
		err := fmt.Errorf("%s %s: %d %s", r.method, r.path, rep.status, rep.errorText())
		return reply{}, c.failed(ctx, idx, master, err)
	}
	if c.failing.Swap(false) {
		c.log.Info("master answers again", "master", master)
	}
	return rep, nil
}

// retryableStatus reports whether a status is the master's own failure.
func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// failed records a failure of the master at index idx and moves on to the
// next one, unless another request has done so already.
func (c *masterClient) failed(ctx context.Context, idx int64, master string, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if c.current.CompareAndSwap(idx, idx+1) {
		next := c.masters[int((idx+1)%int64(len(c.masters)))]
		level := slog.LevelWarn
		if c.failing.Swap(true) {
			level = slog.LevelDebug
		}
		c.log.Log(ctx, level, "master unavailable, moving to the next",
			"master", master, "next", next, "err", err)
	}
	return fmt.Errorf("%w: %s: %w", errUnavailable, master, err)
}

// call sends an authenticated request until some master gives a real
// answer: it backs off and fails over while masters are unavailable, and
// waits for the poll loop to open a new session when the session is
// refused. It returns the first answer that is neither, or ctx's cause.
func (c *masterClient) call(ctx context.Context, bo *backoff, r request) (reply, error) {
	for {
		token, changed := c.session()
		if token == "" {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return reply{}, context.Cause(ctx)
			}
		}
		r.token = token
		rep, err := c.do(ctx, r)
		switch {
		case ctx.Err() != nil:
			return reply{}, context.Cause(ctx)
		case err != nil:
			if err := bo.wait(ctx); err != nil {
				return reply{}, context.Cause(ctx)
			}
			continue
		case rep.status == http.StatusUnauthorized:
			// The poll loop opens a new session; waiting a little keeps a
			// master that refuses every token from making this a spin.
			c.dropSession(token)
			if err := bo.wait(ctx); err != nil {
				return reply{}, context.Cause(ctx)
			}
			continue
		case rep.status/100 == 2 && isStopOrder(rep.body):
			// A master answers any request of a session it has ended with
			// the poll's stop order; the write was not recorded.
			return reply{}, fmt.Errorf("%w: %s ended the session: %s",
				errSessionStopped, rep.master, rep.errorText())
		}
		bo.reset()
		return rep, nil
	}
}

// login opens a new session. It returns errRefused when the master
// refuses the credentials and an errUnavailable error when it failed.
func (c *masterClient) login(ctx context.Context) (sessionInfo, error) {
	rep, err := c.do(ctx, request{method: http.MethodPost, path: "/sessions", basic: true})
	if err != nil {
		return sessionInfo{}, err
	}
	switch {
	case rep.status == http.StatusUnauthorized || rep.status == http.StatusForbidden:
		return sessionInfo{}, fmt.Errorf("%w by %s: %s", errRefused, rep.master, rep.errorText())
	case rep.status/100 != 2:
		return sessionInfo{}, fmt.Errorf("log in at %s: %d %s", rep.master, rep.status, rep.errorText())
	}
	var s sessionInfo
	if err := json.Unmarshal(rep.body, &s.SessionResponse); err != nil || s.Token == "" {
		return sessionInfo{}, fmt.Errorf("log in at %s: unreadable session: %q", rep.master, rep.body)
	}
	s.via = rep.master
	c.setSession(s.Token)
	return s, nil
}

// closeIdle releases pooled connections so that nothing outlives Stop.
func (c *masterClient) closeIdle() { c.hc.CloseIdleConnections() }

// useHold derives the request deadlines from how long the master holds a
// poll: twice that, between 5 s and requestTimeout. A master that hangs
// is then given up on well within the worker time-to-live, from which the
// master derives its hold.
func (c *masterClient) useHold(hold time.Duration) {
	c.timeout.Store(int64(min(max(2*hold, 5*time.Second), requestTimeout)))
}
