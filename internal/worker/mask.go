package worker

import (
	"bytes"
	"slices"
)

// maskText replaces each secret value in a step's output.
const maskText = "***"

// masker replaces secret values in a stream of output with maskText before
// passing it on. A value may arrive split over several writes, so the
// tail of a write that could be the start of a value is held back (never
// more than the longest value less one byte) until the next write or
// flush decides it. Where values overlap, the leftmost match wins, and
// of those the longest.
type masker struct {
	emit    func([]byte)
	secrets [][]byte // longest first
	first   [256]bool
	held    []byte
}

// newMasker returns a masker passing masked output to emit. Empty values
// are ignored; with no values left, output passes unchanged.
func newMasker(values []string, emit func([]byte)) *masker {
	m := &masker{emit: emit}
	for _, v := range values {
		if v == "" {
			continue
		}
		m.secrets = append(m.secrets, []byte(v))
		m.first[v[0]] = true
	}
	slices.SortFunc(m.secrets, func(a, b []byte) int { return len(b) - len(a) })
	return m
}

// write masks p, holding back a tail that may start a secret value.
func (m *masker) write(p []byte) {
	if len(m.secrets) == 0 {
		m.emit(p)
		return
	}
	buf := p
	if len(m.held) > 0 {
		buf = append(m.held, p...)
		m.held = nil
	}
	rest := m.mask(buf, false)
	if len(rest) > 0 {
		m.held = append([]byte(nil), rest...)
	}
}

// flush masks and passes on what is held back, at the end of the output.
func (m *masker) flush() {
	if len(m.held) > 0 {
		held := m.held
		m.held = nil
		m.mask(held, true)
	}
}

// mask emits buf with secret values replaced and returns the unfinished
// tail that could still become one; at the end of the output (final)
// nothing is held back.
func (m *masker) mask(buf []byte, final bool) []byte {
	start := 0 // buf[start:i] is clear text not emitted yet
	for i := 0; i < len(buf); {
		if !m.first[buf[i]] {
			i++
			continue
		}
		matched, partial := m.match(buf[i:], final)
		switch {
		case partial:
			m.emitClear(buf[start:i])
			return buf[i:]
		case matched > 0:
			m.emitClear(buf[start:i])
			m.emit([]byte(maskText))
			i += matched
			start = i
		default:
			i++
		}
	}
	m.emitClear(buf[start:])
	return nil
}

// match reports the length of the longest secret value at the start of
// b, or that b is too short to tell because a longer value may follow.
func (m *masker) match(b []byte, final bool) (n int, partial bool) {
	for _, s := range m.secrets {
		if bytes.HasPrefix(b, s) {
			return len(s), false
		}
		if !final && len(b) < len(s) && bytes.HasPrefix(s, b) {
			return 0, true
		}
	}
	return 0, false
}

func (m *masker) emitClear(b []byte) {
	if len(b) > 0 {
		m.emit(b)
	}
}

// maskString returns s with every secret value replaced, as a masker
// would.
func maskString(s string, values []string) string {
	var out bytes.Buffer
	m := newMasker(values, func(b []byte) { out.Write(b) })
	m.write([]byte(s))
	m.flush()
	return out.String()
}
