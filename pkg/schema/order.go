package schema

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Move is one file of an import that should come later: a statement of
// it ran only when retried after the rest, because it needs what a later
// file creates.
type Move struct {
	File  string // the file to move
	After string // the file that creates what it needs
	Line  int    // the statement's line in File
	Needs string // what it needs, as the error named it (app.office)
}

func (m Move) String() string {
	return fmt.Sprintf("%s after %s (%s:%d needs %s)", m.File, m.After, m.File, m.Line, m.Needs)
}

// OrderHint is an order of the files in which the statements that
// failed only because of the order find what they need: each file after
// the files that create what its statements name. It is read from the
// error messages and the files' CREATE statements, not tried.
type OrderHint struct {
	Moves []Move
	// Order is every file in the hinted order; empty when the moves
	// form a cycle (no order of whole files does it).
	Order []string
	// Cycle, when set, names files that need each other.
	Cycle string
	// Verified: the files were imported in Order and no statement
	// failed because of the order (OrderThatWorks).
	Verified bool
	// Left is how many statements still failed that way in Order, when
	// nothing more could be read from their errors.
	Left int
}

// Lines is the hint as an operator reads it: what it is, the moves (the
// first 10), and the whole order when it was tried. Nil has none.
func (h *OrderHint) Lines() []string {
	if h == nil {
		return nil
	}
	var out []string
	switch {
	case h.Cycle != "":
		out = append(out, "order: no order of whole files avoids the statements that fail because of the order ("+h.Cycle+"); split the files")
	case h.Verified:
		out = append(out, "order: in this order of schema.files no statement fails because of the order (imported to check):")
	case h.Left > 0:
		out = append(out, fmt.Sprintf("order: closer, in this order of schema.files (%d statement(s) still fail because of the order, naming nothing a later file creates):", h.Left))
	default:
		out = append(out, "order: statements failed because of the order; moving these files avoids it (read from the errors, not tried: agent schema diff tries it):")
	}
	// One line a file: the files it must follow, and what it needs.
	var files []string
	after, needs := map[string][]string{}, map[string][]string{}
	for _, m := range h.Moves {
		if _, ok := after[m.File]; !ok {
			files = append(files, m.File)
		}
		if !slices.Contains(after[m.File], m.After) {
			after[m.File] = append(after[m.File], m.After)
		}
		needs[m.File] = append(needs[m.File], fmt.Sprintf("%s (line %d)", m.Needs, m.Line))
	}
	for i, f := range files {
		if i == 10 {
			out = append(out, fmt.Sprintf("  (%d more files to move)", len(files)-i))
			break
		}
		out = append(out, fmt.Sprintf("  move %s after %s: it needs %s", f, strings.Join(after[f], ", "), strings.Join(needs[f], ", ")))
	}
	if h.Verified || h.Left > 0 {
		for _, f := range h.Order {
			out = append(out, "  - "+f)
		}
	}
	return out
}

// missingObject reads what an error says does not exist: relation
// "app.office", function app.log_entity_change(), type "app.status".
var missingObject = regexp.MustCompile(`(?:relation|function|type|view|table|sequence) "?([A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?)"?(?:\([^)]*\))? does not exist`)

// createKinds are the object kinds a CREATE statement names next.
var createKinds = map[string]bool{"TABLE": true, "VIEW": true, "FUNCTION": true, "PROCEDURE": true, "TYPE": true, "SEQUENCE": true, "DOMAIN": true}

// createdIn returns the lower-cased names (schema.name as written, and
// name alone) that the top-level CREATE statements of sql make.
func createdIn(sql string) map[string]bool {
	toks := tokens(sql, 0, len(sql))
	out := map[string]bool{}
	for i := 0; i < len(toks); i++ {
		if !toks[i].isWord("CREATE") {
			continue
		}
		j := i + 1
		for j < len(toks) && toks[j].kind == tWord && !createKinds[toks[j].text] {
			if toks[j].text == "AS" || toks[j].text == "INDEX" || toks[j].text == "TRIGGER" || toks[j].text == "SCHEMA" {
				break
			}
			j++ // OR REPLACE, UNLOGGED, TEMP, MATERIALIZED, ...
		}
		if j >= len(toks) || toks[j].kind != tWord || !createKinds[toks[j].text] {
			continue
		}
		j++
		if j+2 < len(toks) && toks[j].isWord("IF") && toks[j+1].isWord("NOT") && toks[j+2].isWord("EXISTS") {
			j += 3
		}
		var parts []string
		for j < len(toks) && toks[j].kind == tWord {
			parts = append(parts, strings.ToLower(toks[j].text))
			if j+1 < len(toks) && toks[j+1].is(".") {
				j += 2
				continue
			}
			break
		}
		if len(parts) > 0 {
			out[strings.Join(parts, ".")] = true
			out[parts[len(parts)-1]] = true
		}
	}
	return out
}

// moves finds, for each statement of warnings that failed only because
// of the order of names (file names, in import order), the first later
// file that creates what its error says is missing.
func moves(names []string, created map[string]map[string]bool, warnings []Warning) []Move {
	pos := map[string]int{}
	for i, n := range names {
		pos[n] = i
	}
	var out []Move
	for _, w := range warnings {
		fi, ok := pos[w.File]
		m := missingObject.FindStringSubmatch(w.Message)
		if !w.Order || !ok || m == nil {
			continue
		}
		need := strings.ToLower(m[1])
		for ci := fi + 1; ci < len(names); ci++ {
			if created[names[ci]][need] {
				out = append(out, Move{File: w.File, After: names[ci], Line: w.Line, Needs: m[1]})
				break
			}
		}
	}
	return out
}

// topo orders names (in their order) so that each comes after the files
// after names it; cycle names the files left when none can come next.
func topo(names []string, after map[string][]string) (order []string, cycle string) {
	placed := map[string]bool{}
	for len(order) < len(names) {
		next := ""
		for _, n := range names {
			if placed[n] {
				continue
			}
			ready := true
			for _, a := range after[n] {
				ready = ready && placed[a]
			}
			if ready {
				next = n
				break
			}
		}
		if next == "" {
			var stuck []string
			for _, n := range names {
				if !placed[n] {
					stuck = append(stuck, n)
				}
			}
			return nil, "these files need each other: " + strings.Join(stuck, ", ")
		}
		placed[next] = true
		order = append(order, next)
	}
	return order, ""
}

// hint adds ms to after and returns the hint they make for names.
func hint(names []string, after map[string][]string, all, ms []Move) *OrderHint {
	for _, m := range ms {
		after[m.File] = append(after[m.File], m.After)
	}
	h := &OrderHint{Moves: append(all, ms...)}
	h.Order, h.Cycle = topo(names, after)
	return h
}

func names(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

func createdBy(files []File, texts []string) map[string]map[string]bool {
	out := make(map[string]map[string]bool, len(files))
	for i, f := range files {
		out[f.Name] = createdIn(texts[i])
	}
	return out
}

// HintOrder is the order hint of an import of files that gave warnings,
// from the error messages alone (nothing is imported): nil when no
// statement failed only because of the order, or when no file could be
// found that creates what those name. Moving a file can make another
// that needed it fail: OrderThatWorks tries the hint.
func HintOrder(files []File, warnings []Warning) *OrderHint {
	texts, err := sqlTexts(files)
	if err != nil {
		return nil
	}
	ms := moves(names(files), createdBy(files, texts), warnings)
	if len(ms) == 0 {
		return nil
	}
	return hint(names(files), map[string][]string{}, nil, ms)
}

// OrderThatWorks finds an order of files in which no statement fails
// because of the order: it imports the hinted order into a shadow
// database (named for opt.Host) and, while some statement still fails
// that way, refines the hint with what those name and tries again, a
// few times. Verified says whether the last order tried had no such
// failure. nil: the warnings name nothing a later file creates.
func (im *Importer) OrderThatWorks(ctx context.Context, files []File, warnings []Warning, opt ShadowOptions) (*OrderHint, error) {
	texts, err := sqlTexts(files)
	if err != nil {
		return nil, err
	}
	byName := map[string]File{}
	for _, f := range files {
		byName[f.Name] = f
	}
	created := createdBy(files, texts)
	after := map[string][]string{}
	h := hint(names(files), after, nil, moves(names(files), created, warnings))
	if len(h.Moves) == 0 {
		return nil, nil
	}
	for round := 0; round < 4 && h.Cycle == ""; round++ {
		reordered := make([]File, len(h.Order))
		for i, n := range h.Order {
			reordered[i] = byName[n]
		}
		res, err := im.Shadow(ctx, reordered, opt, nil)
		if err != nil {
			return nil, err
		}
		left := 0
		for _, w := range res.Warnings {
			if w.Order {
				left++
			}
		}
		if left == 0 {
			h.Verified = true
			return h, nil
		}
		ms := moves(h.Order, created, res.Warnings)
		if len(ms) == 0 {
			h.Left = left
			return h, nil
		}
		h = hint(names(files), after, h.Moves, ms)
	}
	return h, nil
}
