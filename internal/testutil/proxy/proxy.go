// Package proxy is a TCP proxy for fault injection: put it between a
// process and the database, or between a worker and a master, and make the
// path between them pass, slow down, go silent or break.
//
// The modes act on connections already open and on new ones alike:
//
//   - [Proxy.Pass] forwards bytes as they come.
//   - [Proxy.Delay] forwards every chunk of bytes after a fixed latency,
//     in each direction; a new connection waits that long before the
//     target is dialled.
//   - [Proxy.Blackhole] forwards nothing and closes nothing, like a network
//     partition: the proxy stops reading, so bytes wait in the kernel's
//     buffers and senders eventually block; new connections are accepted
//     but not connected to the target. Nothing is lost: after Pass, held
//     bytes flow again and held connections are connected.
//   - [Proxy.Reset] aborts every connection with a TCP reset on both sides,
//     like a peer that crashed, and resets new connections as they arrive,
//     until Pass or Delay.
//
// In Blackhole mode the proxy's own kernel still acknowledges the bytes it
// does not read, so TCP keepalives do not notice; as in a real partition,
// only the processes' own time-outs do.
//
// Every goroutine the proxy starts has ended when [Proxy.Close] returns.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

type mode int

const (
	modePass mode = iota
	modeBlackhole
	modeReset
)

// dialTimeout bounds one attempt to connect to the target.
const dialTimeout = 10 * time.Second

// Proxy forwards TCP connections from a loopback port to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close: ends dials
	cancel context.CancelFunc
	stopCh func() bool // stops the context.AfterFunc that closes the proxy

	mu      sync.Mutex
	mode    mode
	delay   time.Duration
	changed chan struct{} // closed and replaced at every change of mode
	links   map[*link]struct{}
	closed  bool

	wg sync.WaitGroup // the accept loop and every connection's goroutines
}

// New starts a proxy to target on a free loopback port, in Pass mode. It
// runs until Close is called or ctx is done.
func New(ctx context.Context, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: listen: %w", target, err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		changed: make(chan struct{}),
		links:   make(map[*link]struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.serve()
	p.stopCh = context.AfterFunc(ctx, func() { _ = p.Close() })
	return p, nil
}

// Start starts a proxy to target for the test t and closes it when t ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Addr returns the proxy's listening address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Conns returns the number of client connections the proxy holds open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Pass forwards bytes without delay, ending any other mode.
func (p *Proxy) Pass() { p.setMode(modePass, 0) }

// Delay forwards each chunk of bytes d after it was read, in each
// direction, ending any other mode. A request and its answer thus take at
// least 2*d more.
func (p *Proxy) Delay(d time.Duration) { p.setMode(modePass, d) }

// Blackhole stops forwarding without closing anything, until Pass or Delay.
func (p *Proxy) Blackhole() { p.setMode(modeBlackhole, 0) }

// Reset aborts every open connection with a TCP reset, on the client's side
// and the target's, and does the same to new connections until Pass or
// Delay.
func (p *Proxy) Reset() { p.setMode(modeReset, 0) }

func (p *Proxy) setMode(m mode, delay time.Duration) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.mode, p.delay = m, delay
	close(p.changed)
	p.changed = make(chan struct{})
	var doomed []*link
	if m == modeReset {
		for l := range p.links {
			doomed = append(doomed, l)
		}
	}
	p.mu.Unlock()

	for _, l := range doomed {
		l.close(true)
	}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end. It may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	close(p.changed)
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()

	p.stopCh()
	err := p.ln.Close()
	p.cancel()
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	return err
}

// serve accepts connections until the listener is closed.
func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, most likely: wait for some to be freed.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.admit(c)
	}
}

// admit takes a new client connection: reset at once in Reset mode, else
// handed to a goroutine of its own.
func (p *Proxy) admit(c net.Conn) {
	p.mu.Lock()
	if p.closed || p.mode == modeReset {
		p.mu.Unlock()
		abort(c)
		return
	}
	l := &link{client: c, done: make(chan struct{})}
	p.links[l] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()

	go p.run(l)
}

// run connects a client to the target, once the mode allows, and forwards
// both ways until both directions have ended or the link is closed.
func (p *Proxy) run(l *link) {
	defer p.wg.Done()
	defer p.forget(l)

	if !p.waitForward(l.done) || !sleep(p.currentDelay(), l.done) {
		l.close(true)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	server, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		l.close(true) // the client sees a refusal as a reset
		return
	}
	if !l.setServer(server) {
		abort(server)
		return
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(l, l.client, server) }()
	go func() { defer wg.Done(); p.pipe(l, server, l.client) }()
	wg.Wait()
	l.close(false)
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}

// waitForward blocks while the proxy is in Blackhole mode. It reports
// false if the link must end instead: done was closed, the proxy is
// resetting or closed.
func (p *Proxy) waitForward(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		m, changed, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed || m == modeReset:
			return false
		case m == modePass:
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// chunk is a piece of the byte stream with the time it may be written.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst. A reader holds back while the proxy is in
// Blackhole mode, so that unread bytes stay in the kernel; a writer delivers
// each chunk when it is due. When src ends cleanly, dst's write side is shut
// so that the peer sees the end too; any other error closes the link.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	queue := make(chan chunk, 64)
	writerDone := make(chan struct{})
	var srcEOF bool // written before queue is closed, read only after that

	go func() {
		defer close(writerDone)
		if p.write(l, queue, dst) && srcEOF {
			closeWrite(dst)
		}
	}()

	buf := make([]byte, 32<<10)
read:
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitForward(l.done) {
				break
			}
			c := chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.currentDelay())}
			select {
			case queue <- c:
			case <-l.done:
				break read
			}
		}
		if err != nil {
			srcEOF = errors.Is(err, io.EOF)
			if !srcEOF {
				l.close(false)
			}
			break
		}
	}
	close(queue)
	<-writerDone
}

// write delivers queued chunks to dst until the queue is closed or the link
// ends. It reports whether it delivered every chunk up to the closing of the
// queue.
func (p *Proxy) write(l *link, queue <-chan chunk, dst net.Conn) bool {
	for c := range queue {
		if !sleep(time.Until(c.due), l.done) || !p.waitForward(l.done) {
			return false
		}
		if _, err := dst.Write(c.data); err != nil {
			l.close(false)
			return false
		}
	}
	return true
}

// sleep waits for d, and reports false if done was closed first.
func sleep(d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-done:
		return false
	}
}

// link is one client connection and, once dialled, its connection to the
// target.
type link struct {
	client net.Conn
	done   chan struct{} // closed when the link is closed

	mu     sync.Mutex
	server net.Conn
	closed bool
}

// setServer records the connection to the target; it reports false if the
// link was closed meanwhile.
func (l *link) setServer(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.server = c
	return true
}

// close closes both connections, with a TCP reset if rst is set.
func (l *link) close(rst bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	conns := []net.Conn{l.client, l.server}
	l.mu.Unlock()

	close(l.done)
	for _, c := range conns {
		if c == nil {
			continue
		}
		if rst {
			abort(c)
		} else {
			_ = c.Close()
		}
	}
}

// abort closes c with a TCP reset rather than an orderly close.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// closeWrite shuts the write side of c, telling its peer no more bytes
// will come.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
