package config

import (
	"strings"
	"unicode"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// indexCalls records where each call expression of f starts, so that a
// constructor reports the start of its call rather than its parenthesis.
func (ev *evaluator) indexCalls(f *syntax.File) {
	syntax.Walk(f, func(n syntax.Node) bool {
		if c, ok := n.(*syntax.CallExpr); ok {
			start, _ := c.Span()
			ev.calls[siteOf(c.Lparen)] = toPos(start)
		}
		return true
	})
}

func siteOf(p syntax.Position) callSite {
	return callSite{file: p.Filename(), line: p.Line, col: p.Col}
}

func toPos(p syntax.Position) Pos {
	return Pos{File: p.Filename(), Line: int(p.Line), Col: int(p.Col)}
}

// pos converts a Starlark position, moving a call's parenthesis to the
// start of the call.
func (ev *evaluator) pos(p syntax.Position) Pos {
	if start, ok := ev.calls[siteOf(p)]; ok {
		return start
	}
	return toPos(p)
}

// callerPos is the position of the innermost Starlark code calling the
// running built-in.
func (ev *evaluator) callerPos(th *starlark.Thread) Pos {
	for depth := 1; depth < th.CallStackDepth(); depth++ {
		p := th.CallFrame(depth).Pos
		if p.Filename() != "<builtin>" && p.Line > 0 {
			return ev.pos(p)
		}
	}
	return Pos{File: EntryFile}
}

// parseErrorPos returns the position of a parse error. The parser places
// most "got X, want Y" errors just after the unexpected token X; this moves
// them back to its start, which is where a reader looks. src is the text
// of the file.
func parseErrorPos(src []byte, e syntax.Error) Pos {
	p := toPos(e.Pos)
	got, ok := strings.CutPrefix(e.Msg, "got ")
	if !ok || strings.HasSuffix(e.Msg, "want primary expression") || p.Line < 1 {
		return p
	}
	lines := strings.Split(string(src), "\n")
	if strings.HasPrefix(got, "newline") {
		// After a newline is the start of the next line; the newline
		// itself ends the line before.
		if p.Col == 1 && p.Line > 1 && p.Line-2 < len(lines) {
			return Pos{File: p.File, Line: p.Line - 1, Col: len([]rune(lines[p.Line-2])) + 1}
		}
		return p
	}
	if p.Line > len(lines) {
		return p
	}
	line := []rune(lines[p.Line-1])
	end := p.Col - 1 // index of the rune after the token
	if end < 1 || end > len(line) {
		return p
	}
	start := end
	switch {
	case strings.HasPrefix(got, "'"): // punctuation, quoted: got ':'
		tok, _, _ := strings.Cut(got[1:], "'")
		n := len([]rune(tok))
		if n > 0 && n <= end && string(line[end-n:end]) == tok {
			start = end - n
		}
	case strings.HasPrefix(got, "string literal"), strings.HasPrefix(got, "bytes literal"):
		q := line[end-1]
		if q == '"' || q == '\'' {
			for i := end - 2; i >= 0; i-- {
				if line[i] == q {
					start = i
					break
				}
			}
			for start > 0 && unicode.IsLetter(line[start-1]) { // b"..", r"..."
				start--
			}
		}
	default: // identifiers, numbers and keywords
		for start > 0 && (line[start-1] == '_' || line[start-1] == '.' ||
			unicode.IsLetter(line[start-1]) || unicode.IsDigit(line[start-1])) {
			start--
		}
	}
	p.Col = start + 1
	return p
}
