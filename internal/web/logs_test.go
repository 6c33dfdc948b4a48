package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
)

// rawLog is output no text decoder may alter: invalid UTF-8, a NUL,
// carriage returns and a line without a newline at the end.
var rawLog = "compiling\r\n50%\r100%\n\xff\xfe bad bytes \x00 nul\nend without newline"

func TestRawLogExactBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.finishedBuild("app", build.Success, rawLog)
	path := fmt.Sprintf("/api/v1/builds/%d/steps/1/log", b.ID)

	r := e.do("GET", path, "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	if !bytes.Equal(r.Body, []byte(rawLog)) {
		t.Fatalf("log = %q, want %q", r.Body, rawLog)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain with no charset", ct)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("raw log lacks X-Content-Type-Options: nosniff")
	}

	cases := []struct {
		query string
		want  string
	}{
		{"?offset=0", rawLog},
		{"?offset=28", rawLog[28:]},
		{fmt.Sprintf("?offset=%d", len(rawLog)), ""},
		{"?offset=100000", ""},
	}
	for _, c := range cases {
		r := e.do("GET", path+c.query, "", nil)
		if r.Status != http.StatusOK || string(r.Body) != c.want {
			t.Errorf("GET %s: %d %q, want %q", c.query, r.Status, r.Body, c.want)
		}
	}
	e.expectJSON(e.do("GET", path+"?offset=-1", "", nil), "negative offset", http.StatusBadRequest)
	e.expectJSON(e.do("GET", path+"?follow=maybe", "", nil), "follow neither 1 nor 0", http.StatusBadRequest)
	e.expectJSON(e.do("GET", fmt.Sprintf("/api/v1/builds/%d/steps/9/log", b.ID), "", nil),
		"unknown step", http.StatusNotFound)
}

// TestRawLogLarge checks that a log of many chunks comes back whole.
func TestRawLogLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	b.startStep(1, "big")
	var want bytes.Buffer
	for i := range 300 {
		chunk := bytes.Repeat([]byte{byte(i), 0xff, '\n'}, 1000)
		want.Write(chunk)
		b.log(1, string(chunk))
	}
	r := e.do("GET", fmt.Sprintf("/api/v1/builds/%d/steps/1/log", b.ID), "", nil)
	if !bytes.Equal(r.Body, want.Bytes()) {
		t.Fatalf("log of %d bytes came back as %d different bytes", want.Len(), len(r.Body))
	}
}

func TestRawLogFollow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.startBuild("app", nil)
	b.startStep(1, "test")
	b.log(1, "first\n")

	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s/api/v1/builds/%d/steps/1/log?follow=1", e.srv.URL, b.ID)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("follow: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// readUntil reads the stream until it has n bytes in all.
	var got []byte
	readUntil := func(n int) {
		t.Helper()
		buf := make([]byte, 4096)
		for len(got) < n {
			k, err := resp.Body.Read(buf)
			got = append(got, buf[:k]...)
			if err != nil {
				t.Fatalf("read after %q: %v", got, err)
			}
		}
	}
	readUntil(len("first\n"))

	// Bytes stored while the answer is open arrive on it.
	b.log(1, "second \xff\n")
	readUntil(len("first\nsecond \xff\n"))
	b.log(1, "third")
	b.finishStep(1, build.Success)

	// Once the step is finished the answer ends after its last byte.
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read to the end: %v", err)
	}
	got = append(got, rest...)
	if want := "first\nsecond \xff\nthird"; string(got) != want {
		t.Fatalf("followed log = %q, want %q", got, want)
	}
}

func TestRawLogFollowFromOffsetOfFinishedStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.finishedBuild("app", build.Success, "0123456789")
	r := e.do("GET", fmt.Sprintf("/api/v1/builds/%d/steps/1/log?follow=1&offset=4", b.ID), "", nil)
	if r.Status != http.StatusOK || string(r.Body) != "456789" {
		t.Fatalf("follow of a finished step = %d %q", r.Status, r.Body)
	}
}
