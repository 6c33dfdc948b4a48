package web

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/regent-ci/regent/internal/build"
)

// chromiumPath is where the browser tests expect Chromium.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium for one test and returns a tab's
// context. Without Chromium the test is skipped, except in CI, where the
// browser is part of the toolchain and its absence is a failure. Script
// exceptions thrown by the page are collected and fail the test at the end.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required in CI: %v", err)
		}
		t.Skipf("Chromium not installed at %s: %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})

	// The first action starts the browser; it must not run under a
	// timeout, which would end the browser with it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	var mu sync.Mutex
	var thrown []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if ex, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := ex.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			thrown = append(thrown, fmt.Sprintf("%s:%d:%d: %s", d.URL, d.LineNumber+1, d.ColumnNumber+1, msg))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, ex := range thrown {
			t.Errorf("the page threw: %s", ex)
		}
	})
	return ctx
}

// waitFor polls a JavaScript predicate in the page until it is true.
func waitFor(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(45*time.Second))) // generous: CI machines are busy
	if err != nil {
		logText, _ := chromedp.Run(ctx, chromedp.Evaluate[string](
			`(document.querySelector("#steps") || document.body).innerText`))
		t.Fatalf("waiting for %s: %v\npage shows:\n%s", what, err, logText)
	}
}

func TestBrowserBuildPageFollowsLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := newBrowser(t) // closed first, so the server has no open streams left
	b := e.startBuild("app", nil)
	b.startStep(1, "compile")
	b.log(1, "first line\n")

	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/builds/%d", e.srv.URL, b.ID))); err != nil {
		t.Fatal(err)
	}
	const log1 = `document.querySelector('details.step[data-step="1"] pre.log').textContent`
	waitFor(t, ctx, "the first line", log1+`.includes("first line\n")`)
	// A mark on the window shows later that the page was never reloaded.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.regentMark = true`)); err != nil {
		t.Fatal(err)
	}

	// Bytes stored while the step runs appear without a reload.
	b.log(1, "second line\n")
	waitFor(t, ctx, "the second line", log1+`.includes("first line\nsecond line\n")`)

	// Invalid UTF-8 shows as U+FFFD, one per byte, and the log goes on.
	b.log(1, "bad \xff\xfe bytes\n")
	waitFor(t, ctx, "replacement characters", log1+`.includes("bad \uFFFD\uFFFD bytes\n")`)

	// Progress output rewritten with \r shows only its last state.
	b.log(1, "progress 10%\rprogress 60%\r")
	waitFor(t, ctx, "the progress line so far", log1+`.endsWith("progress 60%")`)
	b.log(1, "progress 100%\ndone\n")
	waitFor(t, ctx, "the collapsed progress line", log1+`.includes("bytes\nprogress 100%\ndone\n")`)

	// A step that starts after the page loaded appears with its log.
	b.finishStep(1, build.Success)
	b.startStep(2, "test")
	b.log(2, "testing\n")
	const log2 = `document.querySelector('details.step[data-step="2"] pre.log')`
	waitFor(t, ctx, "step 2's log", log2+` !== null && `+log2+`.textContent === "testing\n"`)
	waitFor(t, ctx, "step 1's result", `document.querySelector('details.step[data-step="1"] .step-status').textContent.trim() === "success"`)

	b.finishStep(2, build.Failure)
	b.finish(build.Failure)
	waitFor(t, ctx, "the build's result", `document.getElementById("build-status").textContent.trim() === "failure"`)
	waitFor(t, ctx, "the stream's end", `document.getElementById("build").dataset.finished === "true"`)

	reloaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.regentMark !== true`))
	if err != nil || reloaded {
		t.Fatalf("the page was reloaded (%v)", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](log1))
	if err != nil {
		t.Fatal(err)
	}
	if want := "first line\nsecond line\nbad \uFFFD\uFFFD bytes\nprogress 100%\ndone\n"; text != want {
		t.Errorf("step 1 shows %q, want %q", text, want)
	}
	if strings.Contains(text, "10%") {
		t.Error("overwritten progress output is still shown")
	}
}

func TestBrowserHomeRefreshes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := newBrowser(t) // closed first, so the server has no open streams left
	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the builders table", `document.body.textContent.includes("no builds")`)
	e.finishedBuild("app", build.Failure, "")
	waitFor(t, ctx, "app's failure without a reload",
		`document.querySelector("#live").textContent.includes("failure")`)
}
