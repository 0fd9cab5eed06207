package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cohuron/deploy/pkg/envvars"
)

// Areas of the report, in the order it presents them.
const (
	AreaCrash    = "crash"          // SIGKILL at a journal point
	AreaHostile  = "hostile"        // a hostile release, signature or bundle
	AreaStore    = "store-fault"    // the store misbehaves
	AreaResource = "resource-fault" // the host misbehaves
	AreaTrust    = "trust"          // thresholds and key rotation
)

// Case is one fault or attack a test proves the agent survives.
type Case struct {
	Area    string `json:"area"`
	Name    string `json:"name"`    // short, unique within the area
	Attack  string `json:"attack"`  // the fault or attack, one line
	Defense string `json:"defense"` // what stops it, one line
	Detail  string `json:"detail,omitempty"`
}

// Result is a recorded case and how its test ended.
type Result struct {
	Case
	Test    string `json:"test"`
	Package string `json:"package"`
	Passed  bool   `json:"passed"`
	Skipped bool   `json:"skipped,omitempty"`
}

var mu sync.Mutex

// Record notes that t proves c. The outcome is taken when t ends, so a
// case counts as passed only if everything t checked held. It does
// nothing unless COHURON_RELIABILITY_OUT is set.
func Record(t testing.TB, c Case) {
	t.Helper()
	dir := envvars.ReliabilityOut.Get()
	if dir == "" {
		return
	}
	wd, _ := os.Getwd()
	pkg := filepath.Base(wd)
	t.Cleanup(func() {
		r := Result{Case: c, Test: t.Name(), Package: pkg, Passed: !t.Failed() && !t.Skipped(), Skipped: t.Skipped()}
		if err := appendResult(dir, r); err != nil {
			t.Errorf("recording reliability case %s/%s: %v", c.Area, c.Name, err)
		}
	})
}

// appendResult adds one JSON line to a file per test process, so that
// packages tested in parallel never interleave writes.
func appendResult(dir string, r Result) error {
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("cases-%s-%d.jsonl", r.Package, os.Getpid())), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	line, err := json.Marshal(r)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
