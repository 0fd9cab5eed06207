package schema

import (
	"fmt"
	"sort"
	"strings"
)

// Finding is one destructive (or otherwise refused) statement in a file.
type Finding struct {
	File      string
	Line      int    // 1-based
	Statement string // e.g. "DROP SCHEMA", "ALTER TABLE ... DROP COLUMN"
}

func (f Finding) String() string { return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Statement) }

// Destructive scans SQL for statements that lose data: DROP SCHEMA, DROP
// TABLE, DROP DATABASE, DROP OWNED, TRUNCATE and ALTER TABLE ... DROP
// [COLUMN]. Keywords match case-insensitively with any whitespace or
// comments between them. Comments (-- and nested /* */), single-quoted
// strings (also E”, B”, X”, N”, U&”), and quoted identifiers are
// skipped; dollar-quoted bodies are scanned, since function and DO bodies
// are code. It errs on the side of reporting: a DROP TABLE inside a
// dollar-quoted comment is reported too.
func Destructive(name, sql string) []Finding {
	lines := newLineIndex(sql)
	var out []Finding
	destructiveIn(sql, 0, len(sql), name, lines, &out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

func destructiveIn(sql string, from, to int, name string, lines lineIndex, out *[]Finding) {
	toks := tokens(sql, from, to)
	add := func(off int, stmt string) {
		*out = append(*out, Finding{File: name, Line: lines.line(off), Statement: stmt})
	}
	alterTable := false // inside an ALTER TABLE statement
	for i, t := range toks {
		var prev *token
		if i > 0 {
			prev = &toks[i-1]
		}
		switch {
		case t.kind == tDollar:
			destructiveIn(sql, t.bodyStart, t.bodyEnd, name, lines, out)
		case t.is(";"):
			alterTable = false
		case t.isWord("TABLE") && prev != nil && prev.isWord("ALTER"):
			alterTable = true
		case t.isWord("TRUNCATE"):
			// Not: CREATE TRIGGER ... BEFORE/AFTER [INSERT OR] TRUNCATE,
			// GRANT/REVOKE [SELECT,] TRUNCATE.
			if prev != nil && (prev.isWord("BEFORE") || prev.isWord("AFTER") || prev.isWord("OR") ||
				prev.isWord("GRANT") || prev.isWord("REVOKE") || prev.is(",")) {
				continue
			}
			add(t.off, "TRUNCATE")
		case t.isWord("DROP") && i+1 < len(toks):
			next := toks[i+1]
			switch {
			case next.isWord("SCHEMA"), next.isWord("TABLE"), next.isWord("DATABASE"), next.isWord("OWNED"):
				add(t.off, "DROP "+next.text)
			case alterTable && next.kind == tIdent,
				alterTable && next.kind == tWord && !dropKeepsColumn[next.text]:
				// DROP [COLUMN] [IF EXISTS] name
				add(t.off, "ALTER TABLE ... DROP COLUMN")
			}
		}
	}
}

// dropKeepsColumn are the words after DROP in ALTER TABLE that do not
// drop a column: DROP CONSTRAINT, ALTER c DROP DEFAULT / NOT NULL /
// EXPRESSION / IDENTITY.
var dropKeepsColumn = map[string]bool{
	"CONSTRAINT": true, "DEFAULT": true, "NOT": true, "EXPRESSION": true, "IDENTITY": true,
}

// metaCommands finds psql meta-commands (a backslash outside literals,
// identifiers and comments, e.g. \connect, \!, \copy): psql runs them on
// the host it runs on, so schema files must not hold any. Statement is
// the command as written (up to the end of its word).
func metaCommands(name, sql string) []Finding {
	lines := newLineIndex(sql)
	var out []Finding
	for _, t := range tokens(sql, 0, len(sql)) {
		if !t.is(`\`) {
			continue
		}
		end := t.off + 1
		for end < len(sql) && !isSpace(sql[end]) && end-t.off < 40 {
			end++
		}
		out = append(out, Finding{File: name, Line: lines.line(t.off), Statement: sql[t.off:end]})
	}
	return out
}

// transactionControl finds top-level statements that would end or nest
// the transaction Apply runs every file in: BEGIN, START TRANSACTION,
// COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION. Dollar-quoted bodies
// are not looked into (BEGIN/END there are PL/pgSQL blocks); the body of
// BEGIN ATOMIC ... END is understood.
func transactionControl(name, sql string) []Finding {
	lines := newLineIndex(sql)
	toks := tokens(sql, 0, len(sql))
	var out []Finding
	start, atomic := true, 0
	for i, t := range toks {
		next := token{}
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		if t.isWord("ATOMIC") && i > 0 && toks[i-1].isWord("BEGIN") {
			atomic++
		}
		if start && t.kind == tWord {
			stmt := ""
			switch t.text {
			case "BEGIN", "COMMIT", "ROLLBACK", "ABORT":
				stmt = t.text
			case "END":
				if atomic > 0 {
					atomic--
				} else {
					stmt = t.text
				}
			case "START", "PREPARE":
				if next.isWord("TRANSACTION") {
					stmt = t.text + " TRANSACTION"
				}
			}
			if stmt != "" {
				out = append(out, Finding{File: name, Line: lines.line(t.off), Statement: stmt})
			}
		}
		start = t.is(";")
	}
	return out
}

type tokKind int

const (
	tWord   tokKind = iota // unquoted identifier or keyword; text upper-cased
	tIdent                 // quoted identifier
	tString                // string literal of any kind but dollar-quoted
	tDollar                // dollar-quoted string; body in [bodyStart, bodyEnd)
	tNumber
	tPunct // one character
)

type token struct {
	kind               tokKind
	text               string
	off                int
	bodyStart, bodyEnd int
}

func (t token) is(p string) bool     { return t.kind == tPunct && t.text == p }
func (t token) isWord(w string) bool { return t.kind == tWord && t.text == w }
func isIdentStart(c byte) bool       { return c == '_' || c >= 0x80 || isLetter(c) }
func isIdentCont(c byte) bool        { return isIdentStart(c) || isDigit(c) || c == '$' }
func isLetter(c byte) bool           { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool            { return c >= '0' && c <= '9' }
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
func hasPrefixAt(s string, i int, p string) bool { return strings.HasPrefix(s[i:], p) }

// tokens splits sql[from:to] into tokens the way PostgreSQL's lexer does,
// as far as the lint needs: comments vanish, literals are single tokens.
// Unterminated constructs run to the end.
func tokens(sql string, from, to int) []token {
	s := sql[:to]
	var out []token
	i := from
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case hasPrefixAt(s, i, "--"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case hasPrefixAt(s, i, "/*"):
			depth := 0
			for i < len(s) {
				if hasPrefixAt(s, i, "/*") {
					depth++
					i += 2
				} else if hasPrefixAt(s, i, "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'':
			start := i
			i = skipQuoted(s, i, '\'', false)
			out = append(out, token{kind: tString, off: start})
		case c == '"':
			start := i
			i = skipQuoted(s, i, '"', false)
			out = append(out, token{kind: tIdent, off: start})
		case c == '$' && dollarTagLen(s[i:]) > 0:
			n := dollarTagLen(s[i:])
			delim := s[i : i+n]
			body := i + n
			end := strings.Index(s[body:], delim)
			t := token{kind: tDollar, off: i, bodyStart: body, bodyEnd: len(s)}
			i = len(s)
			if end >= 0 {
				t.bodyEnd = body + end
				i = body + end + n
			}
			out = append(out, t)
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdentCont(s[i]) {
				i++
			}
			word := strings.ToUpper(s[start:i])
			switch {
			case i < len(s) && s[i] == '\'' && (word == "E"):
				i = skipQuoted(s, i, '\'', true)
				out = append(out, token{kind: tString, off: start})
			case i < len(s) && s[i] == '\'' && (word == "B" || word == "X" || word == "N"):
				i = skipQuoted(s, i, '\'', false)
				out = append(out, token{kind: tString, off: start})
			case word == "U" && i+1 < len(s) && s[i] == '&' && s[i+1] == '\'':
				i = skipQuoted(s, i+1, '\'', false)
				out = append(out, token{kind: tString, off: start})
			case word == "U" && i+1 < len(s) && s[i] == '&' && s[i+1] == '"':
				i = skipQuoted(s, i+1, '"', false)
				out = append(out, token{kind: tIdent, off: start})
			default:
				out = append(out, token{kind: tWord, text: word, off: start})
			}
		case isDigit(c):
			start := i
			for i < len(s) && (isIdentCont(s[i]) || s[i] == '.') {
				i++
			}
			out = append(out, token{kind: tNumber, off: start})
		default:
			out = append(out, token{kind: tPunct, text: s[i : i+1], off: i})
			i++
		}
	}
	return out
}

// skipQuoted returns the index after the literal opening at s[i] == q; a
// doubled quote is an escaped quote, and with backslash so is \q.
func skipQuoted(s string, i int, q byte, backslash bool) int {
	i++
	for i < len(s) {
		switch {
		case backslash && s[i] == '\\':
			i += 2
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			i += 2
		case s[i] == q:
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// dollarTagLen returns the length of the $tag$ at the start of s, or 0.
func dollarTagLen(s string) int {
	if len(s) < 2 || s[0] != '$' {
		return 0
	}
	i := 1
	if s[i] != '$' {
		if !isIdentStart(s[i]) {
			return 0 // $1 is a parameter
		}
		for i < len(s) && isIdentStart(s[i]) || i < len(s) && isDigit(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '$' {
			return 0
		}
	}
	return i + 1
}

// lineIndex maps byte offsets to 1-based line numbers.
type lineIndex []int // offsets of line starts

func newLineIndex(s string) lineIndex {
	idx := lineIndex{0}
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

func (l lineIndex) line(off int) int {
	return sort.Search(len(l), func(i int) bool { return l[i] > off })
}
