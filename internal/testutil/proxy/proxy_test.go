package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every connection by sending back what it reads, and
// counts the connections it holds.
type echoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, conns: map[net.Conn]bool{}}
	e.wg.Add(1)
	go e.serve()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.conns[c] = true
		e.mu.Unlock()
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			_, _ = io.Copy(c, c)
			_ = c.Close()
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
		}()
	}
}

func (e *echoServer) open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

func (e *echoServer) close() {
	_ = e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// startProxy starts a proxy to the echo server and, when the test ends,
// closes it and checks that none of its goroutines is left.
func startProxy(t *testing.T, e *echoServer) *Proxy {
	t.Helper()
	t.Cleanup(func() { checkNoGoroutines(t) })
	return Start(t, e.ln.Addr().String())
}

// checkNoGoroutines waits for every goroutine of a Proxy to end.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "testutil/proxy.(*Proxy)") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("proxy goroutines left after Close:\n%s", stacks)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

// receive reads exactly len(want) bytes within timeout and compares them.
func receive(t *testing.T, c net.Conn, want string, timeout time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %q: %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectSilence checks that nothing arrives on c for a while, and that c
// stays open meanwhile.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Fatalf("read gave %d bytes, %v; want a time-out", n, err)
	}
}

// expectReset checks that a connection to addr is reset, either while it
// is made or at the first read.
func expectReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection to %s: %v, want ECONNRESET", addr, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPassForwardsBothWays(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)

	c := dial(t, p.Addr())
	send(t, c, "hello")
	receive(t, c, "hello", 5*time.Second)

	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go func() { _, _ = c.Write(big) }()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("1 MiB echo: %v, equal=%v", err, bytes.Equal(got, big))
	}
	if n := p.Conns(); n != 1 {
		t.Errorf("Conns = %d, want 1", n)
	}
}

func TestClientCloseEndsBothSides(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)

	c := dial(t, p.Addr())
	send(t, c, "x")
	receive(t, c, "x", 5*time.Second)
	_ = c.Close()

	waitFor(t, "the proxy to drop the connection", func() bool { return p.Conns() == 0 })
	waitFor(t, "the echo server to see the end", func() bool { return e.open() == 0 })
}

func TestDelayAddsLatencyEachWay(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)
	c := dial(t, p.Addr())
	send(t, c, "warm")
	receive(t, c, "warm", 5*time.Second)

	const d = 150 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	send(t, c, "slow")
	receive(t, c, "slow", 10*time.Second)
	if rtt := time.Since(start); rtt < 2*d {
		t.Errorf("round trip took %v with a delay of %v each way", rtt, d)
	}

	// Chunks in flight keep their order and are not delayed one after
	// another: ten writes take about one delay, not ten.
	start = time.Now()
	for i := range 10 {
		send(t, c, string(rune('a'+i)))
		time.Sleep(time.Millisecond)
	}
	receive(t, c, "abcdefghij", 10*time.Second)
	if rtt := time.Since(start); rtt < 2*d {
		t.Errorf("ten round trips took %v with a delay of %v each way", rtt, d)
	}

	p.Pass()
	send(t, c, "fast")
	receive(t, c, "fast", 5*time.Second)
}

func TestBlackholeHoldsEverythingUntilPass(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)
	old := dial(t, p.Addr())
	send(t, old, "before")
	receive(t, old, "before", 5*time.Second)

	p.Blackhole()
	send(t, old, "during")
	expectSilence(t, old, 300*time.Millisecond)

	// A new connection is accepted but goes nowhere.
	fresh := dial(t, p.Addr())
	send(t, fresh, "new")
	expectSilence(t, fresh, 300*time.Millisecond)
	if n := e.open(); n != 1 {
		t.Errorf("echo server holds %d connections during blackhole, want 1", n)
	}

	p.Pass()
	receive(t, old, "during", 5*time.Second)
	receive(t, fresh, "new", 5*time.Second)
}

func TestResetAbortsOpenAndNewConnections(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)
	c := dial(t, p.Addr())
	send(t, c, "x")
	receive(t, c, "x", 5*time.Second)

	p.Reset()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a reset connection: %v, want ECONNRESET", err)
	}
	waitFor(t, "the target's side to be closed", func() bool { return e.open() == 0 })

	expectReset(t, p.Addr())

	p.Pass()
	after := dial(t, p.Addr())
	send(t, after, "back")
	receive(t, after, "back", 5*time.Second)
}

func TestResetDuringBlackholeAbortsHeldConnections(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)
	p.Blackhole()
	c := dial(t, p.Addr())
	send(t, c, "held")
	waitFor(t, "the proxy to take the connection", func() bool { return p.Conns() == 1 })

	p.Reset()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read: %v, want ECONNRESET", err)
	}
}

func TestCloseEndsConnectionsAndListener(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e)
	c := dial(t, p.Addr())
	send(t, c, "x")
	receive(t, c, "x", 5*time.Second)
	p.Blackhole()
	held := dial(t, p.Addr())
	send(t, held, "y")

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []net.Conn{c, held} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("read after Close: %v, want the connection closed", err)
		}
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Error("dialled the proxy after Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	p.Pass() // no effect, no panic
}

func TestContextEndClosesProxy(t *testing.T) {
	e := startEcho(t)
	t.Cleanup(func() { checkNoGoroutines(t) })
	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(ctx, e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	send(t, c, "x")
	receive(t, c, "x", 5*time.Second)

	cancel()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read after the context ended: %v, want the connection closed", err)
	}
	_ = p.Close()
}

func TestUnreachableTargetResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close()

	t.Cleanup(func() { checkNoGoroutines(t) })
	p := Start(t, target)
	expectReset(t, p.Addr())
}
