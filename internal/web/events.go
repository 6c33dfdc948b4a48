package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/store"
)

// Bounds of a build's event stream.
const (
	// maxLogEvent is the most log bytes one log event carries.
	maxLogEvent = 64 << 10
	// maxLogPoll is the most log bytes sent in one look at the store
	// before the others steps get their turn.
	maxLogPoll = 1 << 20
	// keepAlive is how long a stream may stay silent before a comment
	// line is sent, so that proxies do not close it.
	keepAlive = 15 * time.Second
)

// logEvent is the data of a log event: the step's log from byte offset
// Offset up to Next, decoded as UTF-8 with each invalid byte replaced by
// U+FFFD.
type logEvent struct {
	Step   int    `json:"step"`
	Offset int64  `json:"offset"`
	Next   int64  `json:"next"`
	Text   string `json:"text"`
}

// buildEvents streams a build's progress as Server-Sent Events:
//
//	step   the step, as JSON, whenever its state, result or log size changed
//	log    new log bytes of a step (see logEvent)
//	build  the build, as JSON, at the start and whenever it changed
//	end    the build has finished and every log byte was sent
//
// Each step's log starts at the offset given by ?offsets=STEP:OFFSET,...
// (0 for steps not listed). Log events carry the offsets reached as their
// event id, so a browser that reconnects resumes where it stopped.
func (s *Server) buildEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	if _, err := s.cfg.Store.BuildByID(r.Context(), id); err != nil {
		s.fail(w, r, "look up build", err)
		return
	}
	spec := r.URL.Query().Get("offsets")
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		spec = last
	}
	offsets, err := parseOffsets(spec)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream lasts as long as the build
	w.WriteHeader(http.StatusOK)

	wait, cancel := s.streamContext(r)
	defer cancel()
	es := &eventStream{s: s, w: w, build: id, sent: offsets, steps: map[int][]byte{}}
	es.write("retry: 2000\n\n")
	if err := s.runEvents(r.Context(), wait, es, rc); err != nil && r.Context().Err() == nil {
		s.log.Warn("build event stream stopped", "build", id, "err", err)
	}
}

// runEvents looks at the store every EventPoll and sends what changed,
// until the build is finished and fully sent or the client goes away. It
// waits between looks on wait, which also ends when the server is closed.
func (s *Server) runEvents(ctx, wait context.Context, es *eventStream, rc *http.ResponseController) error {
	for {
		more, done, err := es.poll(ctx)
		if err != nil {
			return err
		}
		if done {
			es.write("event: end\ndata: {}\n\n")
		}
		if err := es.flush(rc); err != nil || done {
			return err
		}
		if more {
			continue
		}
		if !sleep(wait, s.cfg.EventPoll) {
			return nil
		}
		if time.Since(es.lastWrite) > keepAlive {
			es.write(": keep-alive\n\n")
		}
	}
}

// eventStream is the state of one client's stream: what it was last sent.
type eventStream struct {
	s         *Server
	w         io.Writer
	build     int64
	lastBuild []byte
	steps     map[int][]byte
	sent      map[int]int64
	err       error
	lastWrite time.Time
}

// poll sends what changed since the last look. more says that log bytes
// are still waiting; done that the build has finished and all was sent.
func (es *eventStream) poll(ctx context.Context) (more, done bool, err error) {
	st := es.s.cfg.Store
	b, err := st.BuildByID(ctx, es.build)
	if err != nil {
		return false, false, err
	}
	steps, err := st.Steps(ctx, es.build)
	if err != nil {
		return false, false, err
	}
	for _, step := range steps {
		j, _ := json.Marshal(showStep(step))
		if !bytes.Equal(j, es.steps[step.Number]) {
			es.event("step", "", j)
			es.steps[step.Number] = j
		}
	}

	budget := maxLogPoll
	complete := true
	for _, step := range steps {
		if err := es.sendLog(ctx, step, &budget); err != nil {
			return false, false, err
		}
		if es.sent[step.Number] < step.LogSize || step.State != build.StateFinished {
			complete = false
		}
	}

	j, _ := json.Marshal(showBuild(b))
	if !bytes.Equal(j, es.lastBuild) {
		es.event("build", "", j)
		es.lastBuild = j
	}
	done = b.State == build.StateFinished && complete
	return budget <= 0, done, es.err
}

// sendLog sends a step's unsent log bytes as log events, spending at
// most budget bytes. While the step runs, an incomplete UTF-8 sequence at
// the end is held back until the rest of it arrives, so that a character
// split between two writes is not shown as two replacement characters.
func (es *eventStream) sendLog(ctx context.Context, step store.Step, budget *int) error {
	for *budget > 0 && es.sent[step.Number] < step.LogSize {
		from := es.sent[step.Number]
		to := min(step.LogSize, from+maxLogEvent)
		var buf bytes.Buffer
		end, err := es.s.cfg.Store.WriteLog(ctx, &buf, step.BuildID, step.Number, from, to)
		if err != nil {
			return fmt.Errorf("read log of step %d: %w", step.Number, err)
		}
		data := buf.Bytes()
		if end < step.LogSize || step.State != build.StateFinished {
			data = data[:len(data)-incompleteTail(data)]
		}
		if len(data) == 0 {
			return nil
		}
		next := from + int64(len(data))
		es.sent[step.Number] = next
		j, _ := json.Marshal(logEvent{Step: step.Number, Offset: from, Next: next, Text: decode(data)})
		es.event("log", formatOffsets(es.sent), j)
		*budget -= len(data)
	}
	return nil
}

// event writes one event.
func (es *eventStream) event(name, id string, data []byte) {
	var b strings.Builder
	b.WriteString("event: " + name + "\n")
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	es.write(b.String())
}

// write sends text unless an earlier write failed.
func (es *eventStream) write(text string) {
	if es.err != nil {
		return
	}
	_, es.err = io.WriteString(es.w, text)
	es.lastWrite = time.Now()
}

func (es *eventStream) flush(rc *http.ResponseController) error {
	if es.err != nil {
		return es.err
	}
	return rc.Flush()
}

// incompleteTail returns how many bytes at the end of b start a UTF-8
// sequence that is not complete yet.
func incompleteTail(b []byte) int {
	for n := 1; n <= utf8.UTFMax-1 && n <= len(b); n++ {
		c := b[len(b)-n]
		if utf8.RuneStart(c) {
			if c >= 0xC0 && !utf8.FullRune(b[len(b)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// decode turns log bytes into text, replacing each byte that is not part
// of valid UTF-8 with U+FFFD.
func decode(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	out.Grow(len(b) + 16)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		out.WriteRune(r) // utf8.RuneError for an invalid byte
		b = b[size:]
	}
	return out.String()
}

// parseOffsets reads "STEP:OFFSET,..." as sent in event ids.
func parseOffsets(spec string) (map[int]int64, error) {
	out := map[int]int64{}
	if spec == "" {
		return out, nil
	}
	for _, part := range strings.Split(spec, ",") {
		step, off, ok := strings.Cut(part, ":")
		n, err1 := strconv.Atoi(step)
		o, err2 := strconv.ParseInt(off, 10, 64)
		if !ok || err1 != nil || err2 != nil || n < 0 || o < 0 {
			return nil, fmt.Errorf("offsets must read STEP:OFFSET,... with whole numbers, not %q", spec)
		}
		out[n] = o
	}
	return out, nil
}

// formatOffsets writes offsets in the form parseOffsets reads, by step.
func formatOffsets(m map[int]int64) string {
	steps := make([]int, 0, len(m))
	for n := range m {
		steps = append(steps, n)
	}
	slices.Sort(steps)
	parts := make([]string, len(steps))
	for i, n := range steps {
		parts[i] = fmt.Sprintf("%d:%d", n, m[n])
	}
	return strings.Join(parts, ",")
}
