// Command report generates docs/RELIABILITY.md, the reliability report,
// from what a test run recorded: the cases-*.jsonl files the proving-ground
// tests write through reliability.Record, and the fuzz.jsonl that
// scripts/fuzz.sh writes, both in the directory COHURON_RELIABILITY_OUT
// names.
//
//	go run ./internal/reliability/cmd/report -in DIR -out docs/RELIABILITY.md
//
// `make reliability` runs the tests and the fuzz targets with recording on,
// then this command. The report gives a summary per area, a headline
// sentence per area, one table of cases per area and one of fuzz targets.
// Its date is the modification time of the newest input file, so the same
// inputs always give the same bytes.
//
// The report is written even when a recorded case or fuzz target failed;
// the command then prints how many failed and exits 1, so that
// `make reliability` fails.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cohuron/deploy/internal/reliability"
)

// module is trimmed from fuzz package paths to keep the table narrow.
const module = "github.com/cohuron/deploy"

// regenerate is the command the report names for regenerating it.
const regenerate = "make reliability"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// area is how the report presents one area of cases.
type area struct {
	key   string
	title string
	about string
	// headline is one sentence's format: %[1]s is the cases passed,
	// %[2]s the cases recorded.
	headline string
}

// areas are the known areas, in the order the report presents them.
var areas = []area{
	{reliability.AreaCrash, "Crash points", "The agent is killed with SIGKILL at a journal point and must recover on restart.",
		"Crash points: %[2]s tested, %[1]s passed"},
	{reliability.AreaHostile, "Hostile inputs", "A hostile release, signature or bundle must be rejected.",
		"Hostile inputs: %[1]s rejected of %[2]s"},
	{reliability.AreaStore, "Store faults", "The store misbehaves; the agent must survive it.",
		"Store faults survived: %[1]s of %[2]s"},
	{reliability.AreaResource, "Resource faults", "The host misbehaves; the agent must survive it.",
		"Resource faults survived: %[1]s of %[2]s"},
	{reliability.AreaTrust, "Trust", "Signature thresholds and key rotation must hold.",
		"Trust checks held: %[1]s of %[2]s"},
}

// fuzzResult is one line of fuzz.jsonl, as scripts/fuzz.sh writes it.
type fuzzResult struct {
	Package     string `json:"package"`
	Target      string `json:"target"`
	Fuzztime    string `json:"fuzztime"`
	Execs       int64  `json:"execs"`
	Interesting int64  `json:"interesting"`
	Elapsed     string `json:"elapsed"`
	Passed      bool   `json:"passed"`
}

type stats struct{ total, passed, failed, skipped int }

func (s *stats) add(r reliability.Result) {
	s.total++
	switch {
	case r.Skipped:
		s.skipped++
	case r.Passed:
		s.passed++
	default:
		s.failed++
	}
}

// inputs is everything one test run recorded.
type inputs struct {
	cases   []reliability.Result
	fuzz    []fuzzResult
	fuzzRan bool      // fuzz.jsonl exists
	newest  time.Time // modification time of the newest input file
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "`dir`ectory the test run recorded into (COHURON_RELIABILITY_OUT); required")
	out := fs.String("out", "-", "`file` to write the Markdown report to; - for standard output")
	title := fs.String("title", "Reliability", "the report's title")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: report -in DIR [-out FILE] [-title TITLE]\n\n"+
			"Writes the reliability report (docs/RELIABILITY.md) from DIR/cases-*.jsonl and DIR/fuzz.jsonl.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *in == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "report: -in DIR is required and there are no arguments")
		fs.Usage()
		return 2
	}

	data, err := load(*in)
	if err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}
	doc := render(*title, data)
	if *out == "-" {
		if _, err := stdout.Write(doc); err != nil {
			fmt.Fprintf(stderr, "report: %v\n", err)
			return 1
		}
	} else if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}

	code := 0
	var failedCases, failedFuzz int
	for _, r := range data.cases {
		if !r.Passed && !r.Skipped {
			failedCases++
		}
	}
	for _, f := range data.fuzz {
		if !f.Passed {
			failedFuzz++
		}
	}
	if failedCases > 0 {
		fmt.Fprintf(stderr, "%d case(s) failed\n", failedCases)
		code = 1
	}
	if failedFuzz > 0 {
		fmt.Fprintf(stderr, "%d fuzz target(s) failed\n", failedFuzz)
		code = 1
	}
	return code
}

// load reads every DIR/cases-*.jsonl and, if there is one, DIR/fuzz.jsonl.
func load(dir string) (*inputs, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("-in %s is not a directory", dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "cases-*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	data := &inputs{}
	for _, name := range files {
		if err := readLines(name, data, func(line []byte) error {
			var r reliability.Result
			if err := json.Unmarshal(line, &r); err != nil {
				return err
			}
			data.cases = append(data.cases, r)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if len(data.cases) == 0 {
		return nil, fmt.Errorf("no cases recorded in %s (no cases-*.jsonl with a case in it): run the tests with COHURON_RELIABILITY_OUT=%s, or `%s`", dir, dir, regenerate)
	}
	fuzzFile := filepath.Join(dir, "fuzz.jsonl")
	err = readLines(fuzzFile, data, func(line []byte) error {
		var f fuzzResult
		if err := json.Unmarshal(line, &f); err != nil {
			return err
		}
		data.fuzz = append(data.fuzz, f)
		return nil
	})
	switch {
	case err == nil:
		data.fuzzRan = true
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, err
	}
	return data, nil
}

// readLines calls each for every non-blank line of the file and notes its
// modification time in data.newest.
func readLines(name string, data *inputs, each func(line []byte) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.ModTime().After(data.newest) {
		data.newest = fi.ModTime()
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := each(line); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// render writes the report. It depends only on data, so the same inputs
// give the same bytes.
func render(title string, data *inputs) []byte {
	// Areas: the known ones in order, then any other, sorted.
	order := make([]area, 0, len(areas))
	order = append(order, areas...)
	byArea := map[string][]reliability.Result{}
	for _, r := range data.cases {
		byArea[r.Area] = append(byArea[r.Area], r)
	}
	var unknown []string
	for key := range byArea {
		if !isKnown(key) {
			unknown = append(unknown, key)
		}
	}
	sort.Strings(unknown)
	for _, key := range unknown {
		name := key
		if name == "" {
			name = "(no area)"
		}
		order = append(order, area{key: key, title: name, about: "Cases recorded under an area the report does not know.",
			headline: strings.ReplaceAll(name, "%", "%%") + ": %[1]s passed of %[2]s"})
	}
	statsOf := map[string]stats{}
	var all stats
	for _, r := range data.cases {
		s := statsOf[r.Area]
		s.add(r)
		statsOf[r.Area] = s
		all.add(r)
	}
	var fuzzExecs int64
	var fuzzFailed int
	for _, f := range data.fuzz {
		fuzzExecs += f.Execs
		if !f.Passed {
			fuzzFailed++
		}
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "<!-- Generated by `%s` (internal/reliability/cmd/report). DO NOT EDIT. -->\n\n", regenerate)
	fmt.Fprintf(&b, "> **Generated file — do not edit by hand.** `%s` regenerates it from a test run: "+
		"the proving-ground tests record each fault or attack they prove the agent survives, "+
		"and scripts/fuzz.sh records each fuzz target it runs.\n>\n", regenerate)
	fmt.Fprintf(&b, "> Run of %s · %s · %s/%s\n\n", data.newest.UTC().Format("2006-01-02"), runtime.Version(), runtime.GOOS, runtime.GOARCH)

	b.WriteString("## Summary\n\n")
	b.WriteString("| Area | Cases recorded | Passed | Failed | Skipped |\n|---|--:|--:|--:|--:|\n")
	for _, a := range order {
		s := statsOf[a.key]
		fmt.Fprintf(&b, "| [%s](#%s) | %s | %s | %s | %s |\n", cell(a.key), anchor(a.title), num(s.total), num(s.passed), num(s.failed), num(s.skipped))
	}
	fmt.Fprintf(&b, "| **Total** | **%s** | **%s** | **%s** | **%s** |\n\n", num(all.total), num(all.passed), num(all.failed), num(all.skipped))
	if data.fuzzRan {
		b.WriteString("| Fuzz targets | Executions | Failures |\n|--:|--:|--:|\n")
		fmt.Fprintf(&b, "| %s | %s | %s |\n\n", num(len(data.fuzz)), num64(fuzzExecs), num(fuzzFailed))
	}

	for _, a := range order {
		s := statsOf[a.key]
		if s.total == 0 {
			fmt.Fprintf(&b, "- %s: none recorded.\n", a.title)
			continue
		}
		fmt.Fprintf(&b, "- %s%s.\n", fmt.Sprintf(a.headline, num(s.passed), num(s.total)), notPassed(s))
	}
	if data.fuzzRan {
		fmt.Fprintf(&b, "- Fuzz: %s, %s executions, %s.\n", plural(len(data.fuzz), "target"), num64(fuzzExecs), plural(fuzzFailed, "failure"))
	} else {
		b.WriteString("- Fuzz: not run.\n")
	}
	b.WriteString("\n")

	for _, a := range order {
		fmt.Fprintf(&b, "## %s\n\n%s Area `%s`.\n\n", a.title, a.about, a.key)
		rows := append([]reliability.Result(nil), byArea[a.key]...)
		if len(rows) == 0 {
			b.WriteString("No cases recorded.\n\n")
			continue
		}
		sort.SliceStable(rows, func(i, j int) bool { return caseLess(rows[i], rows[j]) })
		b.WriteString("| Case | Fault or attack | Defense | Test | Result |\n|---|---|---|---|---|\n")
		for _, r := range rows {
			attack := cell(r.Attack)
			if r.Detail != "" {
				attack += "<br>" + cell(r.Detail)
			}
			test := r.Test
			if r.Package != "" {
				test = r.Package + "." + r.Test
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", code(r.Name), attack, cell(r.Defense), code(test), result(r.Passed, r.Skipped))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Fuzz\n\n")
	if !data.fuzzRan {
		fmt.Fprintf(&b, "No fuzz run recorded: run scripts/fuzz.sh with COHURON_RELIABILITY_OUT set, or `%s`.\n", regenerate)
		return b.Bytes()
	}
	b.WriteString("Every `func Fuzz…` target in the module, run by scripts/fuzz.sh for the time shown " +
		"(go test -fuzz; Time is the elapsed time go test reported).\n\n")
	if len(data.fuzz) == 0 {
		b.WriteString("No fuzz targets ran.\n")
		return b.Bytes()
	}
	for _, f := range data.fuzz {
		if f.Execs == 0 && f.Passed {
			b.WriteString("A target with 0 executions spent its time replaying its seed and cached corpus " +
				"(go test's \"gathering baseline coverage\") before it could fuzz; give it a longer -fuzztime.\n\n")
			break
		}
	}
	fuzz := append([]fuzzResult(nil), data.fuzz...)
	sort.SliceStable(fuzz, func(i, j int) bool {
		if fuzz[i].Package != fuzz[j].Package {
			return fuzz[i].Package < fuzz[j].Package
		}
		return fuzz[i].Target < fuzz[j].Target
	})
	b.WriteString("| Package | Target | Time | Executions | New interesting | Result |\n|---|---|--:|--:|--:|---|\n")
	for _, f := range fuzz {
		pkg := strings.TrimPrefix(f.Package, module+"/")
		elapsed := f.Elapsed
		if f.Fuzztime != "" && f.Fuzztime != f.Elapsed {
			elapsed = fmt.Sprintf("%s (-fuzztime %s)", f.Elapsed, f.Fuzztime)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", code(pkg), code(f.Target), cell(elapsed), num64(f.Execs), num64(f.Interesting), result(f.Passed, false))
	}
	return b.Bytes()
}

func isKnown(key string) bool {
	for _, a := range areas {
		if a.key == key {
			return true
		}
	}
	return false
}

// caseLess orders a section's rows by test, then case name; the rest only
// makes the order total.
func caseLess(a, b reliability.Result) bool {
	ka := []string{a.Test, a.Name, a.Package, a.Attack, a.Defense, a.Detail, result(a.Passed, a.Skipped)}
	kb := []string{b.Test, b.Name, b.Package, b.Attack, b.Defense, b.Detail, result(b.Passed, b.Skipped)}
	for i := range ka {
		if ka[i] != kb[i] {
			return ka[i] < kb[i]
		}
	}
	return false
}

// notPassed is the headline's note of cases that did not pass.
func notPassed(s stats) string {
	var notes []string
	if s.failed > 0 {
		notes = append(notes, num(s.failed)+" failed")
	}
	if s.skipped > 0 {
		notes = append(notes, num(s.skipped)+" skipped")
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ")"
}

func result(passed, skipped bool) string {
	switch {
	case skipped:
		return "⏭ skipped"
	case passed:
		return "✅ passed"
	default:
		return "❌ failed"
	}
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\\|", "|") // so it is not doubly escaped
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "<", "&lt;")
	s = strings.ReplaceAll(s, "\n", "<br>")
	return s
}

// code is s as inline code inside a table cell ("|" is still escaped:
// GitHub unescapes it inside code spans in tables).
func code(s string) string {
	if s == "" {
		return ""
	}
	if strings.ContainsAny(s, "`\n<") {
		return cell(s)
	}
	return "`" + strings.ReplaceAll(s, "|", "\\|") + "`"
}

// anchor is GitHub's anchor for a heading.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ' || r == '-':
			b.WriteRune('-')
		case r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return num(n) + " " + word + "s"
}

func num(n int) string { return num64(int64(n)) }

// num64 is n with thousands separators: 12,345,678.
func num64(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
