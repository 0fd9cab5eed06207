package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	crashOK     = `{"area":"crash","name":"after-extract","attack":"SIGKILL after extract","defense":"journal replay","test":"TestCrash/after-extract","package":"agent","passed":true}`
	crashOK2    = `{"area":"crash","name":"before-switch","attack":"SIGKILL before switch","defense":"journal replay","test":"TestCrash/before-switch","package":"agent","passed":true}`
	hostileOK   = `{"area":"hostile","name":"pipe|name","attack":"a path with a | in it","defense":"rejected by the parser","test":"TestHostile","package":"bundle","passed":true}`
	hostileOK2  = `{"area":"hostile","name":"pipe|name","attack":"the same case from another test","defense":"rejected by the verifier","test":"TestAnother","package":"bundle","passed":true}`
	storeFailed = `{"area":"store-fault","name":"slow-get","attack":"GET stalls","defense":"timeout","test":"TestStore","package":"agent","passed":false}`
	trustSkip   = `{"area":"trust","name":"rotation","attack":"old key","defense":"threshold","test":"TestTrust","package":"trust","passed":false,"skipped":true}`
	oddArea     = `{"area":"zebra","name":"stripe","attack":"odd","defense":"even","test":"TestZebra","package":"zoo","passed":true}`
	fuzzLines   = `{"package": "github.com/cohuron/deploy/pkg/manifest", "target": "FuzzParseRelease", "fuzztime": "5s", "execs": 12345678, "interesting": 2, "elapsed": "5s", "passed": true}
{"package": "github.com/cohuron/deploy/pkg/bundle", "target": "FuzzRead", "fuzztime": "5s", "execs": 1000, "interesting": 0, "elapsed": "5s", "passed": true}
`
	fuzzFailed = `{"package": "github.com/cohuron/deploy/pkg/bundle", "target": "FuzzRead", "fuzztime": "5s", "execs": 10, "interesting": 0, "elapsed": "1s", "passed": false}` + "\n"
)

func TestRun(t *testing.T) {
	stamp := time.Date(2031, 4, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		files      map[string]string // file name in -in → content
		code       int
		contains   []string
		excludes   []string
		stderrHas  string
		noOutput   bool
		outputFile bool
	}{{
		name: "all passed",
		files: map[string]string{
			"cases-agent-100.jsonl":  crashOK2 + "\n" + crashOK + "\n",
			"cases-bundle-101.jsonl": hostileOK + "\n\n" + hostileOK2 + "\n",
			"fuzz.jsonl":             fuzzLines,
			"unrelated.txt":          "not read",
		},
		contains: []string{
			"do not edit by hand", "`make reliability`", "Run of 2031-04-05",
			"| [crash](#crash-points) | 2 | 2 | 0 | 0 |",
			"| [hostile](#hostile-inputs) | 2 | 2 | 0 | 0 |",
			"| [store-fault](#store-faults) | 0 | 0 | 0 | 0 |",
			"| **Total** | **4** | **4** | **0** | **0** |",
			"| 2 | 12,346,678 | 0 |",
			"- Crash points: 2 tested, 2 passed.\n",
			"- Hostile inputs: 2 rejected of 2.\n",
			"- Store faults: none recorded.\n",
			"- Fuzz: 2 targets, 12,346,678 executions, 0 failures.\n",
			// Sorted by test, then case; the same case from two tests keeps both rows.
			"| `after-extract` | SIGKILL after extract | journal replay | `agent.TestCrash/after-extract` | ✅ passed |\n" +
				"| `before-switch` | SIGKILL before switch | journal replay | `agent.TestCrash/before-switch` | ✅ passed |\n",
			"| `pipe\\|name` | the same case from another test | rejected by the verifier | `bundle.TestAnother` | ✅ passed |\n" +
				"| `pipe\\|name` | a path with a \\| in it | rejected by the parser | `bundle.TestHostile` | ✅ passed |\n",
			"| `pkg/bundle` | `FuzzRead` | 5s | 1,000 | 0 | ✅ passed |\n| `pkg/manifest` | `FuzzParseRelease` | 5s | 12,345,678 | 2 | ✅ passed |\n",
		},
	}, {
		name: "failed, skipped and unknown area",
		files: map[string]string{
			"cases-agent-7.jsonl": storeFailed + "\n" + crashOK + "\n" + oddArea + "\n",
			"cases-trust-8.jsonl": trustSkip + "\n",
		},
		code:      1,
		stderrHas: "1 case(s) failed",
		contains: []string{
			"| [store-fault](#store-faults) | 1 | 0 | 1 | 0 |",
			"| [trust](#trust) | 1 | 0 | 0 | 1 |",
			"| [zebra](#zebra) | 1 | 1 | 0 | 0 |",
			"| **Total** | **4** | **2** | **1** | **1** |",
			"- Store faults survived: 0 of 1 (1 failed).\n",
			"- Trust checks held: 0 of 1 (1 skipped).\n",
			"- zebra: 1 passed of 1.\n",
			"- Fuzz: not run.\n",
			"| `slow-get` | GET stalls | timeout | `agent.TestStore` | ❌ failed |",
			"| `rotation` | old key | threshold | `trust.TestTrust` | ⏭ skipped |",
			"## zebra\n",
		},
		excludes: []string{"| Fuzz targets |"},
	}, {
		name: "failed fuzz target",
		files: map[string]string{
			"cases-agent-7.jsonl": crashOK + "\n",
			"fuzz.jsonl":          fuzzFailed,
		},
		code:       1,
		stderrHas:  "1 fuzz target(s) failed",
		outputFile: true,
		contains: []string{
			"- Fuzz: 1 target, 10 executions, 1 failure.\n",
			"| `pkg/bundle` | `FuzzRead` | 1s (-fuzztime 5s) | 10 | 0 | ❌ failed |",
		},
	}, {
		name:      "no case files",
		files:     map[string]string{"fuzz.jsonl": fuzzLines},
		code:      1,
		stderrHas: "no cases recorded",
		noOutput:  true,
	}, {
		name:      "malformed line",
		files:     map[string]string{"cases-agent-1.jsonl": crashOK + "\n{not json\n"},
		code:      1,
		stderrHas: "cases-agent-1.jsonl:2:",
		noOutput:  true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(in, name)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, stamp, stamp.Add(-time.Duration(len(name))*time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			var outputs []string
			for range 2 {
				args := []string{"-in", in}
				outFile := filepath.Join(t.TempDir(), "RELIABILITY.md")
				if tt.outputFile {
					args = append(args, "-out", outFile)
				}
				var stdout, stderr bytes.Buffer
				if code := run(args, &stdout, &stderr); code != tt.code {
					t.Fatalf("run = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
				}
				if !strings.Contains(stderr.String(), tt.stderrHas) {
					t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderrHas)
				}
				out := stdout.String()
				if tt.outputFile {
					if out != "" {
						t.Errorf("stdout = %q with -out, want nothing", out)
					}
					b, err := os.ReadFile(outFile)
					if err != nil {
						t.Fatal(err)
					}
					out = string(b)
				}
				outputs = append(outputs, out)
			}
			out := outputs[0]
			if outputs[1] != out {
				t.Errorf("two runs on the same inputs differ:\n%s\n----\n%s", out, outputs[1])
			}
			if tt.noOutput {
				if out != "" {
					t.Errorf("wrote a report on bad input:\n%s", out)
				}
				return
			}
			for _, want := range tt.contains {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q; report:\n%s", want, out)
				}
			}
			for _, bad := range tt.excludes {
				if strings.Contains(out, bad) {
					t.Errorf("report has %q; report:\n%s", bad, out)
				}
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != 2 {
		t.Errorf("run without -in = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "-in DIR is required") {
		t.Errorf("stderr = %q", stderr.String())
	}
	if code := run([]string{"-in", filepath.Join(t.TempDir(), "missing")}, &stdout, &stderr); code == 0 {
		t.Error("run with a missing -in directory succeeded")
	}
}

func TestNum(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 12345678: "12,345,678", -1234: "-1,234"} {
		if got := num64(n); got != want {
			t.Errorf("num64(%d) = %q, want %q", n, got, want)
		}
	}
}
