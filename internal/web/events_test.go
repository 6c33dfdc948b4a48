package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// sseEvent is one Server-Sent Event as a client sees it.
type sseEvent struct {
	Name, ID, Data string
}

// sseClient reads a build's event stream over real HTTP.
type sseClient struct {
	t      *testing.T
	events chan sseEvent
	resp   *http.Response
}

// openEvents connects to a build's event stream with the given query and
// headers, and reads events in the background until the stream ends.
func (e *testEnv) openEvents(buildID int64, query string, header map[string]string) *sseClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	e.t.Cleanup(cancel)
	url := fmt.Sprintf("%s/api/v1/builds/%d/events%s", e.srv.URL, buildID, query)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: e.t, events: make(chan sseEvent, 1000), resp: resp}
	go c.read()
	e.t.Cleanup(func() { resp.Body.Close() })
	return c
}

// read parses the stream: fields up to a blank line make one event.
func (c *sseClient) read() {
	defer close(c.events)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if ev.Name != "" || ev.Data != "" {
				c.events <- ev
			}
			ev = sseEvent{}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Name = value
		case "id":
			ev.ID = value
		case "data":
			ev.Data += value
		}
	}
}

// next returns the next event with the given name, skipping others.
func (c *sseClient) next(name string) sseEvent {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				c.t.Fatalf("stream ended while waiting for a %s event", name)
			}
			if ev.Name == name {
				return ev
			}
		case <-timeout:
			c.t.Fatalf("no %s event within 20s", name)
		}
	}
}

// logText collects log events of a step until their text holds want.
func (c *sseClient) logText(step int, want string) (string, logEvent) {
	c.t.Helper()
	var text strings.Builder
	var last logEvent
	for !strings.Contains(text.String(), want) {
		ev := c.next("log")
		if err := json.Unmarshal([]byte(ev.Data), &last); err != nil {
			c.t.Fatalf("log event %q: %v", ev.Data, err)
		}
		if last.Step == step {
			text.WriteString(last.Text)
		}
	}
	return text.String(), last
}

func TestEventsStreamLogWhileStepRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	b.startStep(1, "compile")
	b.log(1, "line one\n")

	c := e.openEvents(b.ID, "", nil)
	var step map[string]any
	if err := json.Unmarshal([]byte(c.next("step").Data), &step); err != nil {
		t.Fatal(err)
	}
	if step["name"] != "compile" || step["state"] != "running" {
		t.Errorf("first step event = %v", step)
	}
	if text, _ := c.logText(1, "line one\n"); text != "line one\n" {
		t.Errorf("log so far = %q", text)
	}

	// Bytes appended while the step runs arrive without reconnecting.
	b.log(1, "line two\n")
	if text, ev := c.logText(1, "line two\n"); text != "line two\n" || ev.Offset != 9 || ev.Next != 18 {
		t.Errorf("second log event = %q at %d..%d", text, ev.Offset, ev.Next)
	}

	// A character split between two appends arrives whole; invalid bytes
	// arrive as U+FFFD, one per byte, and the stream goes on.
	b.log(1, "caf\xc3")
	b.log(1, "\xa9 \xff\xfe ok\n")
	if text, _ := c.logText(1, "ok\n"); text != "café \uFFFD\uFFFD ok\n" {
		t.Errorf("decoded text = %q", text)
	}

	b.startStep(2, "test")
	b.log(2, "step two\n")
	if text, ev := c.logText(2, "step two\n"); !strings.Contains(text, "step two") || ev.Step != 2 {
		t.Errorf("log of step 2 = %q", text)
	}

	b.finishStep(1, build.Success)
	b.finishStep(2, build.Failure)
	b.finish(build.Failure)
	for {
		var bl map[string]any
		if err := json.Unmarshal([]byte(c.next("build").Data), &bl); err != nil {
			t.Fatal(err)
		}
		if bl["state"] == "finished" {
			if bl["result"] != "failure" {
				t.Errorf("finished build event = %v", bl)
			}
			break
		}
	}
	c.next("end")
	if _, open := <-c.events; open {
		t.Error("stream goes on after the end event")
	}
}

func TestEventsResumeFromOffsets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	b.startStep(1, "one")
	b.log(1, "aaaa\nbbbb\n")
	b.finishStep(1, build.Success)
	b.startStep(2, "two")
	b.log(2, "cccc\n")

	// ?offsets= skips what the page already shows.
	c := e.openEvents(b.ID, "?offsets=1:5", nil)
	text, ev := c.logText(1, "bbbb\n")
	if text != "bbbb\n" || ev.Offset != 5 {
		t.Errorf("log from offset 5 = %q at %d", text, ev.Offset)
	}
	ev2 := c.next("log")
	if !strings.HasPrefix(ev2.ID, "1:10,2:5") {
		t.Errorf("event id = %q, want the offsets reached", ev2.ID)
	}

	// A reconnecting browser sends the last id; the stream resumes there
	// and wins over the page's ?offsets=.
	b.log(2, "dddd\n")
	r := e.openEvents(b.ID, "?offsets=1:0", map[string]string{"Last-Event-ID": "1:10,2:5"})
	if text, ev := r.logText(2, "dddd\n"); text != "dddd\n" || ev.Offset != 5 {
		t.Errorf("resumed log = %q at %d", text, ev.Offset)
	}

	e.expectJSON(e.do("GET", fmt.Sprintf("/api/v1/builds/%d/events?offsets=x", b.ID), "", nil),
		"bad offsets", http.StatusBadRequest)
}

func TestEventsOfFinishedBuildEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.finishedBuild("app", build.Success, "all done\n")
	c := e.openEvents(b.ID, "", nil)
	if text, _ := c.logText(1, "all done\n"); text != "all done\n" {
		t.Errorf("log = %q", text)
	}
	c.next("end")
}

func TestCloseEndsStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	b.startStep(1, "forever")
	b.log(1, "tick\n")
	c := e.openEvents(b.ID, "", nil)
	c.logText(1, "tick\n")

	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET",
		fmt.Sprintf("%s/api/v1/builds/%d/steps/1/log?follow=1", e.srv.URL, b.ID), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	e.web.Close()
	deadline := time.After(20 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-c.events:
		case <-deadline:
			t.Fatal("event stream still open 20s after Close")
		}
	}
	if data, err := io.ReadAll(resp.Body); err != nil || string(data) != "tick\n" {
		t.Errorf("followed log after Close = %q, %v", data, err)
	}
}

func TestIncompleteTail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"abc", 0},
		{"caf\xc3", 1},
		{"caf\xc3\xa9", 0},
		{"\xe2\x82", 2},
		{"x\xe2\x82\xac", 0},
		{"\xf0\x9f\x98", 3},
		{"\xf0\x9f\x98\x80", 0},
		{"\xff", 0},
		{"\x80\x80\x80", 0},
		{"\xf0\x80", 0}, // can never be valid, so nothing to wait for
	}
	for _, c := range cases {
		if got := incompleteTail([]byte(c.in)); got != c.want {
			t.Errorf("incompleteTail(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"plain\n", "plain\n"},
		{"\xff\xfe", "\uFFFD\uFFFD"},
		{"a\xc3(b", "a\uFFFD(b"},
		{"é€😀", "é€😀"},
	}
	for _, c := range cases {
		if got := decode([]byte(c.in)); got != c.want {
			t.Errorf("decode(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestOffsets(t *testing.T) {
	t.Parallel()
	good := map[string]map[int]int64{
		"":            {},
		"1:0":         {1: 0},
		"1:10,2:5":    {1: 10, 2: 5},
		"3:7,1:100,2": nil,
		"a:1":         nil,
		"1:-1":        nil,
	}
	for spec, want := range good {
		got, err := parseOffsets(spec)
		if want == nil {
			if err == nil {
				t.Errorf("parseOffsets(%q) = %v, want an error", spec, got)
			}
			continue
		}
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("parseOffsets(%q) = %v, %v; want %v", spec, got, err, want)
		}
		if spec != "" && formatOffsets(got) != spec {
			t.Errorf("formatOffsets(%v) = %q, want %q", got, formatOffsets(got), spec)
		}
	}
}
