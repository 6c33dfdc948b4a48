package config

import (
	"strconv"

	"go.starlark.net/syntax"
)

// The Starlark interpreter lets one operation build a value of up to a
// gigabyte ("x" * 1000000000) and gives no hook on its operators. So,
// before a file is compiled, the operations that can make a value much
// larger than their operands are rewritten into calls of guarded
// built-ins that check the size of the result first:
//
//	a + b        ->  $add(a, b)
//	a * b        ->  $mul(a, b)
//	a % b        ->  $mod(a, b)
//	x *= b       ->  x = $mul(x, b)      (when x is a plain name)
//	s.join       ->  $attr(s, "join")    (and format, replace, split, ...)
//
// The names start with "$", which no configuration can spell, so they
// cannot be shadowed or called directly. Positions are kept, so errors
// point at the operator as they would without the rewrite.

// Names of the guarded built-ins the rewrite calls.
const (
	guardAdd      = "$add"
	guardMul      = "$mul"
	guardMod      = "$mod"
	guardAttrName = "$attr"
)

// guardedMethods are the methods whose results can be much larger than
// their receiver and arguments.
var guardedMethods = map[string]bool{
	"join": true, "format": true, "replace": true, "split": true,
	"rsplit": true, "splitlines": true, "extend": true,
}

// rewriteFile applies the rewrite to every statement of f.
func rewriteFile(f *syntax.File) {
	rewriteStmts(f.Stmts)
}

func rewriteStmts(stmts []syntax.Stmt) {
	for _, s := range stmts {
		rewriteStmt(s)
	}
}

func rewriteStmt(s syntax.Stmt) {
	switch s := s.(type) {
	case *syntax.AssignStmt:
		rewriteTarget(s.LHS)
		s.RHS = rewriteExpr(s.RHS)
		if id, ok := s.LHS.(*syntax.Ident); ok && (s.Op == syntax.STAR_EQ || s.Op == syntax.PERCENT_EQ) {
			guard := guardMul
			if s.Op == syntax.PERCENT_EQ {
				guard = guardMod
			}
			use := &syntax.Ident{NamePos: id.NamePos, Name: id.Name}
			s.RHS = guardCall(guard, s.OpPos, use, s.RHS)
			s.Op = syntax.EQ
		}
	case *syntax.DefStmt:
		rewriteList(s.Params)
		rewriteStmts(s.Body)
	case *syntax.ExprStmt:
		s.X = rewriteExpr(s.X)
	case *syntax.ForStmt:
		rewriteTarget(s.Vars)
		s.X = rewriteExpr(s.X)
		rewriteStmts(s.Body)
	case *syntax.WhileStmt:
		s.Cond = rewriteExpr(s.Cond)
		rewriteStmts(s.Body)
	case *syntax.IfStmt:
		s.Cond = rewriteExpr(s.Cond)
		rewriteStmts(s.True)
		rewriteStmts(s.False)
	case *syntax.ReturnStmt:
		s.Result = rewriteExpr(s.Result)
	}
}

// rewriteTarget rewrites the subexpressions of an assignment target but
// never the target itself, which must stay assignable.
func rewriteTarget(e syntax.Expr) {
	switch e := e.(type) {
	case *syntax.IndexExpr:
		e.X = rewriteExpr(e.X)
		e.Y = rewriteExpr(e.Y)
	case *syntax.DotExpr:
		e.X = rewriteExpr(e.X)
	case *syntax.ParenExpr:
		rewriteTarget(e.X)
	case *syntax.ListExpr:
		for _, x := range e.List {
			rewriteTarget(x)
		}
	case *syntax.TupleExpr:
		for _, x := range e.List {
			rewriteTarget(x)
		}
	}
}

func rewriteList(list []syntax.Expr) {
	for i, x := range list {
		list[i] = rewriteExpr(x)
	}
}

// rewriteExpr returns e with its guarded operations replaced; nodes other
// than the replaced ones are changed in place.
func rewriteExpr(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case *syntax.BinaryExpr:
		e.X = rewriteExpr(e.X)
		e.Y = rewriteExpr(e.Y)
		switch e.Op {
		case syntax.PLUS:
			return guardCall(guardAdd, e.OpPos, e.X, e.Y)
		case syntax.STAR:
			return guardCall(guardMul, e.OpPos, e.X, e.Y)
		case syntax.PERCENT:
			return guardCall(guardMod, e.OpPos, e.X, e.Y)
		}
	case *syntax.DotExpr:
		e.X = rewriteExpr(e.X)
		if guardedMethods[e.Name.Name] {
			name := &syntax.Literal{
				Token: syntax.STRING, TokenPos: e.NamePos,
				Raw: strconv.Quote(e.Name.Name), Value: e.Name.Name,
			}
			return guardCall(guardAttrName, e.Dot, e.X, name)
		}
	case *syntax.CallExpr:
		e.Fn = rewriteExpr(e.Fn)
		rewriteList(e.Args)
	case *syntax.Comprehension:
		e.Body = rewriteExpr(e.Body)
		for _, c := range e.Clauses {
			switch c := c.(type) {
			case *syntax.ForClause:
				rewriteTarget(c.Vars)
				c.X = rewriteExpr(c.X)
			case *syntax.IfClause:
				c.Cond = rewriteExpr(c.Cond)
			}
		}
	case *syntax.CondExpr:
		e.Cond = rewriteExpr(e.Cond)
		e.True = rewriteExpr(e.True)
		e.False = rewriteExpr(e.False)
	case *syntax.DictEntry:
		e.Key = rewriteExpr(e.Key)
		e.Value = rewriteExpr(e.Value)
	case *syntax.DictExpr:
		rewriteList(e.List)
	case *syntax.IndexExpr:
		e.X = rewriteExpr(e.X)
		e.Y = rewriteExpr(e.Y)
	case *syntax.LambdaExpr:
		rewriteList(e.Params)
		e.Body = rewriteExpr(e.Body)
	case *syntax.ListExpr:
		rewriteList(e.List)
	case *syntax.TupleExpr:
		rewriteList(e.List)
	case *syntax.ParenExpr:
		e.X = rewriteExpr(e.X)
	case *syntax.SliceExpr:
		e.X = rewriteExpr(e.X)
		e.Lo = rewriteExpr(e.Lo)
		e.Hi = rewriteExpr(e.Hi)
		e.Step = rewriteExpr(e.Step)
	case *syntax.UnaryExpr:
		e.X = rewriteExpr(e.X)
	}
	return e
}

// guardCall builds the call guard(args...) positioned at pos.
func guardCall(guard string, pos syntax.Position, args ...syntax.Expr) *syntax.CallExpr {
	return &syntax.CallExpr{
		Fn:     &syntax.Ident{NamePos: pos, Name: guard},
		Lparen: pos,
		Args:   args,
		Rparen: pos,
	}
}
