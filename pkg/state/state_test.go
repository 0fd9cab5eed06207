package state_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/state"
)

// holdLockEnv makes the test binary a helper that holds the lock of the
// state directory it names until its stdin is closed (see TestMain).
const holdLockEnv = "STATE_TEST_HOLD_LOCK_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdLockEnv); dir != "" {
		os.Exit(holdLock(dir))
	}
	os.Exit(m.Run())
}

func holdLock(dir string) int {
	l, err := state.Store{Dir: dir}.Acquire()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // until the parent closes our stdin
	l.Release()
	return 0
}

var when = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func sample() *state.State {
	spec := &manifest.Spec{
		Paths:    manifest.Paths{Root: "/opt/cohuron", Backups: "/opt/cohuron-backups"},
		EnvFiles: []manifest.EnvFile{{Path: "apps/api/.env", Vars: map[string]manifest.Value{"PORT": {Literal: "4000"}, "JWT_SECRET": {RefKind: manifest.RefSSM, Ref: "/demo/jwt"}}}},
		Processes: []manifest.Process{{Name: "api", Command: []string{"node", "server.js"}, EnvFile: "apps/api/.env", Port: 4000,
			Health: []manifest.HealthCheck{{HTTP: &manifest.HTTPCheck{URL: "http://127.0.0.1:4000/"}, Within: manifest.Duration{Duration: 30 * time.Second}}}}},
	}
	s := &state.State{
		Current: &state.Release{ID: "000002-abcdef012345", Seq: 2, Digest: "abcdef0123456789", Dir: "/b/releases/000002-abcdef012345",
			Bundle: "ff00", BundleRef: &manifest.BundleRef{Key: "bundles/b.tar.gz", SHA256: "ff00", Size: 10, Files: 2, Unpacked: 20},
			Inputs: manifest.Inputs{Code: manifest.Input{Digest: "sha256:c"}, Config: manifest.Input{Digest: "sha256:d", Files: map[string]string{"apps/api/.env": "sha256:e"}}},
			Spec:   spec, Applied: when},
		Previous:   []state.Release{{ID: "adopted-20261125-120000", Dir: "/b/releases/adopted-20261125-120000", Applied: when.Add(-time.Hour)}},
		LastSeq:    2,
		LastDigest: "abcdef0123456789",
		LatestETag: `"etag"`,
		CrashCount: map[string]int{"3": 1},
		Last:       &state.Attempt{Seq: 2, Digest: "abcdef0123456789", Started: when, Finished: when.Add(time.Second), Result: "converged", Steps: []string{"switch seq 1 -> 2"}},
		Desired:    2,
		NextPoll:   when.Add(time.Minute),
		Rollback:   &state.RollbackRecord{From: "seq 3", To: "000002-abcdef012345", Reason: "health", When: when},
	}
	s.MarkBad(3, "bad-digest", "health check failed", when)
	return s
}

func TestSaveLoad(t *testing.T) {
	st := state.Store{Dir: filepath.Join(t.TempDir(), "state")}

	// A host that never ran an agent has an empty state.
	empty, err := st.Load()
	if err != nil {
		t.Fatalf("Load of a missing file: %v", err)
	}
	if !reflect.DeepEqual(empty, &state.State{}) {
		t.Fatalf("Load of a missing file = %+v, want an empty state", empty)
	}

	want := sample()
	if err := st.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	fi, err := os.Stat(filepath.Join(st.Dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestLoadDamaged(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":  `{"current": {"id": "x"`,
		"not json":   "hello",
		"wrong type": `{"lastSeq": "seven"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := state.Store{Dir: dir}.Load()
			if err == nil {
				t.Fatalf("Load of a damaged file = %+v, want an error", s)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
				t.Errorf("error %q does not name %s as damaged", err, path)
			}
		})
	}
}

func TestJournal(t *testing.T) {
	st := state.Store{Dir: t.TempDir()}
	if j, err := st.LoadJournal(); err != nil || j != nil {
		t.Fatalf("LoadJournal with none = %+v, %v; want nil, nil", j, err)
	}
	// Clearing when there is none is fine.
	if err := st.ClearJournal(); err != nil {
		t.Fatalf("ClearJournal with none: %v", err)
	}
	for _, phase := range []string{state.PhaseStaging, state.PhaseSwitching, state.PhaseSwitched, state.PhaseRollingBack} {
		want := &state.Journal{Phase: phase, Seq: 7, Digest: "d7", NewDir: "/b/releases/7", PrevDir: "/b/releases/6", Started: when}
		if err := st.WriteJournal(want); err != nil {
			t.Fatal(err)
		}
		got, err := st.LoadJournal()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("journal round trip: got %+v, want %+v", got, want)
		}
	}
	if err := st.ClearJournal(); err != nil {
		t.Fatal(err)
	}
	if j, err := st.LoadJournal(); err != nil || j != nil {
		t.Fatalf("LoadJournal after ClearJournal = %+v, %v; want nil, nil", j, err)
	}

	path := filepath.Join(st.Dir, "journal.json")
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadJournal(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadJournal of a damaged file: %v, want an error naming %s", err, path)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "file.txt") // parent is created
	for i, content := range []string{"first\n", "second, longer than the first\n", "3\n"} {
		mode := os.FileMode(0o640)
		if err := state.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("write %d: content %q, want %q", i, got, content)
		}
		entries, err := os.ReadDir(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "file.txt" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("write %d left %v, want only file.txt (no temp files)", i, names)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
}

// TestWriteFileReplacesAtomically: a reader holding the old file keeps
// reading the old content, whole, after a write (the new content comes in
// a new inode by rename, never by rewriting the old one in place).
func TestWriteFileReplacesAtomically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	old := strings.Repeat("old ", 1000)
	if err := state.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := state.WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	held, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(held) != old {
		t.Fatalf("the old file was changed in place: a reader saw %d bytes %.20q…", len(held), held)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Fatalf("content after write %q, want %q", got, "new")
	}
}

func TestWriteFileFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the rename fails.
	path := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := state.WriteFile(path, []byte("data"), 0o600)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("WriteFile over a directory: %v, want an error naming %s", err, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("a failed write left %d entries, want only the directory", len(entries))
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.json")
	if err := state.WriteJSON(path, map[string]int{"b": 2, "a": 1}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := "{\n  \"a\": 1,\n  \"b\": 2\n}\n"; string(got) != want {
		t.Fatalf("WriteJSON wrote %q, want %q", got, want)
	}
	if err := state.WriteJSON(path, func() {}); err == nil {
		t.Fatal("WriteJSON of a func: want an error")
	}
}

func TestLockInProcess(t *testing.T) {
	st := state.Store{Dir: filepath.Join(t.TempDir(), "state")} // created by Acquire
	l1, err := st.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second Acquire
	// opens the file again and conflicts even in the same process.
	l2, err := st.Acquire()
	if !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second Acquire: %v, want ErrLocked", err)
	}
	if l2 != nil {
		t.Fatal("second Acquire returned a lock with its error")
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), "pid "+pid) {
		t.Errorf("error %q does not name the holder, pid %s", err, pid)
	}
	if err := l1.Release(); err != nil {
		t.Fatal(err)
	}
	l3, err := st.Acquire()
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := l3.Release(); err != nil {
		t.Fatal(err)
	}
	// Release of nothing is harmless.
	var none *state.Lock
	if err := none.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	st := state.Store{Dir: t.TempDir()}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+st.Dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			stdin.Close()
			cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v; want \"locked\"", line, err)
	}

	_, err = st.Acquire()
	if !errors.Is(err, state.ErrLocked) {
		t.Fatalf("Acquire while another process holds the lock: %v, want ErrLocked", err)
	}
	if pid := strconv.Itoa(cmd.Process.Pid); !strings.Contains(err.Error(), "pid "+pid) {
		t.Errorf("error %q does not name the holder, pid %s", err, pid)
	}

	// The lock goes with the process.
	stdin.Close()
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	l, err := st.Acquire()
	if err != nil {
		t.Fatalf("Acquire after the holder exited: %v", err)
	}
	l.Release()
	// The lock file now names us.
	data, _ := os.ReadFile(filepath.Join(st.Dir, "lock"))
	if got := strings.TrimSpace(string(data)); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid %d", got, os.Getpid())
	}
}

func TestKnownBad(t *testing.T) {
	var s state.State
	if _, ok := s.IsBad(1, "d1"); ok {
		t.Fatal("empty state: seq 1 is bad")
	}
	s.MarkBad(1, "d1", "health failed", when)
	s.MarkBad(2, "", "interrupted", when) // digest unknown: any bytes of seq 2
	tests := []struct {
		seq    uint64
		digest string
		bad    bool
		reason string
	}{
		{1, "d1", true, "health failed"},
		{1, "d1-republished", false, ""}, // different bytes under the same seq are not the bad release
		{2, "anything", true, "interrupted"},
		{2, "", true, "interrupted"},
		{3, "d1", false, ""},
	}
	for _, tt := range tests {
		b, ok := s.IsBad(tt.seq, tt.digest)
		if ok != tt.bad || (ok && b.Reason != tt.reason) {
			t.Errorf("IsBad(%d, %q) = %+v, %v; want bad=%v reason %q", tt.seq, tt.digest, b, ok, tt.bad, tt.reason)
		}
	}
	// Marking again replaces.
	s.MarkBad(1, "d1b", "again", when)
	if _, ok := s.IsBad(1, "d1"); ok {
		t.Error("old digest still bad after MarkBad replaced it")
	}
	if b, ok := s.IsBad(1, "d1b"); !ok || b.Reason != "again" || !b.When.Equal(when) {
		t.Errorf("IsBad(1, d1b) = %+v, %v", b, ok)
	}
}
