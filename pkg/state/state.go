package state

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/manifest"
)

// Release is one release installed on the host.
type Release struct {
	ID      string          `json:"id"`     // directory name under <backups>/releases
	Seq     uint64          `json:"seq"`    // 0 for an adopted tree
	Digest  string          `json:"digest"` // sha256 of the signed manifest bytes
	Dir     string          `json:"dir"`    // absolute path of the release tree
	Bundle  string          `json:"bundle,omitempty"`
	Inputs  manifest.Inputs `json:"inputs"`
	Spec    *manifest.Spec  `json:"spec,omitempty"`
	Applied time.Time       `json:"applied"`

	// BundleRef is the signed bundle reference, so the release can be
	// reinstalled from the cache or the store (drift repair) without its
	// manifest. Nil for an adopted tree and in older state files.
	BundleRef *manifest.BundleRef `json:"bundleRef,omitempty"`

	// Deps is the dependency install in Dir (nil when none was run).
	Deps *Deps `json:"deps,omitempty"`
	// Compose is what `docker compose up` last ran with for this release.
	Compose *Compose `json:"compose,omitempty"`
	// Schema is the schema import this release converged with.
	Schema *Schema `json:"schema,omitempty"`
}

// Deps identifies an installed dependency tree.
type Deps struct {
	Key   string `json:"key"`   // digest of the dependency inputs and tool versions
	Tools string `json:"tools"` // e.g. "node v20.20.2, pnpm 9.15.9", for plan reasons
}

// Compose is the compose definition a release brought up.
type Compose struct {
	Key string `json:"key"` // digest of the compose file, its env file and settings
	// Images maps each image reference to the image ID it had at `up`.
	Images map[string]string `json:"images,omitempty"`
}

// Schema is what the schema step found or did for a release.
type Schema struct {
	Digest  string   `json:"digest"` // schema inputs digest known applied
	Applied []string `json:"applied,omitempty"`
	Seeded  []string `json:"seeded,omitempty"`
	// Dump is the pg_dump taken before this release's import ("" when
	// nothing was imported).
	Dump string `json:"dump,omitempty"`
}

// Attempt is the outcome of the last converge.
type Attempt struct {
	Seq      uint64    `json:"seq"`
	Digest   string    `json:"digest,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Result   string    `json:"result"`          // converged, rolled-back, rejected, failed, rollback-failed
	Error    string    `json:"error,omitempty"` // what went wrong, for operators
	Blocked  string    `json:"blocked,omitempty"`
	Steps    []string  `json:"steps,omitempty"` // what ran, with reasons
	// Schema says what a rollback did about a schema import: restored the
	// dump, or kept the imported schema because the release did not
	// declare it reversible.
	Schema string `json:"schema,omitempty"`
}

// Bad is a release that must not be retried: it failed or was rejected.
type Bad struct {
	Digest string    `json:"digest"`
	Reason string    `json:"reason"`
	When   time.Time `json:"when"`
}

// State is the agent's record of its host.
type State struct {
	Current    *Release        `json:"current,omitempty"`
	Previous   []Release       `json:"previous,omitempty"` // good releases kept for rollback, newest first
	LastSeq    uint64          `json:"lastSeq"`            // highest seq applied or attempted (replay floor)
	LastDigest string          `json:"lastDigest,omitempty"`
	LatestETag string          `json:"latestETag,omitempty"`
	KnownBad   map[string]Bad  `json:"knownBad,omitempty"` // by seq
	CrashCount map[string]int  `json:"crashCount,omitempty"`
	Last       *Attempt        `json:"lastAttempt,omitempty"`
	Desired    uint64          `json:"desiredSeq,omitempty"`
	NextPoll   time.Time       `json:"nextPoll,omitempty"`
	Rollback   *RollbackRecord `json:"rollback,omitempty"`
}

// RollbackRecord says what the last rollback did and why.
type RollbackRecord struct {
	From, To string
	Reason   string
	When     time.Time
	Manual   bool
}

// IsBad reports whether seq is known bad with these bytes.
func (s *State) IsBad(seq uint64, digest string) (Bad, bool) {
	b, ok := s.KnownBad[strconv.FormatUint(seq, 10)]
	return b, ok && (b.Digest == digest || b.Digest == "")
}

// MarkBad remembers seq as bad.
func (s *State) MarkBad(seq uint64, digest, reason string, now time.Time) {
	if s.KnownBad == nil {
		s.KnownBad = map[string]Bad{}
	}
	s.KnownBad[strconv.FormatUint(seq, 10)] = Bad{Digest: digest, Reason: reason, When: now}
}

// Store reads and writes the state files in one directory.
type Store struct {
	Dir string
}

func (st Store) statePath() string   { return filepath.Join(st.Dir, "state.json") }
func (st Store) journalPath() string { return filepath.Join(st.Dir, "journal.json") }

// Load reads the state; a missing file is an empty state.
func (st Store) Load() (*State, error) {
	s := &State{}
	if err := readJSON(st.statePath(), s); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading agent state: %w", err)
	}
	return s, nil
}

// Save writes the state atomically.
func (st Store) Save(s *State) error { return WriteJSON(st.statePath(), s) }

// Journal is a converge in progress. It is written before each phase, so
// after a crash the agent knows what it was doing.
type Journal struct {
	Phase string `json:"phase"` // staging, switching, switched, rolling-back
	// Kind is install (nothing older on the host), upgrade, or repair (the
	// same release, reinstalled or restarted after drift).
	Kind string `json:"kind"`
	// Procs are the processes the new release declares, so recovery can
	// stop the ones the previous release does not have.
	Procs   []string  `json:"procs,omitempty"`
	Seq     uint64    `json:"seq"`
	Digest  string    `json:"digest"`
	NewDir  string    `json:"newDir"`
	PrevDir string    `json:"prevDir"` // "" on a first install
	Started time.Time `json:"started"`
	// Compose is set before `docker compose up` runs with NewDir's
	// definition, so recovery knows to bring PrevDir's back.
	Compose bool `json:"compose,omitempty"`
	// Schema is set before a schema import, so recovery can undo an
	// import that committed before the crash.
	Schema *SchemaUndo `json:"schema,omitempty"`
}

// SchemaUndo is what undoing a schema import needs.
type SchemaUndo struct {
	Dump        string         `json:"dump"`
	Schemas     []string       `json:"schemas,omitempty"`
	Reversible  bool           `json:"reversible,omitempty"`
	DatabaseURL manifest.Value `json:"databaseURL"` // a reference, resolved on use
}

// Journal kinds.
const (
	KindInstall = "install"
	KindUpgrade = "upgrade"
	KindRepair  = "repair"
)

// Journal phases.
const (
	PhaseStaging     = "staging"      // building the new release next to the live one
	PhaseSwitching   = "switching"    // about to move the root symlink
	PhaseSwitched    = "switched"     // root points at the new release; restarting and checking
	PhaseRollingBack = "rolling-back" // returning to PrevDir
)

// LoadJournal returns the journal, or nil when no converge is in progress.
func (st Store) LoadJournal() (*Journal, error) {
	j := &Journal{}
	err := readJSON(st.journalPath(), j)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	return j, nil
}

// WriteJournal records the phase about to start.
func (st Store) WriteJournal(j *Journal) error { return WriteJSON(st.journalPath(), j) }

// ClearJournal ends a converge.
func (st Store) ClearJournal() error {
	if err := os.Remove(st.journalPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return SyncDir(st.Dir)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s is damaged: %w", path, err)
	}
	return nil
}

// WriteJSON writes v to path atomically: temp file, fsync, rename, fsync dir.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(path, append(data, '\n'), 0o600)
}

// WriteFile writes data to path atomically with the given mode.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+rand.Text()[:8])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Lock is held by the one agent allowed to act on a host.
type Lock struct{ f *os.File }

// ErrLocked means another agent holds the lock.
var ErrLocked = errors.New("another agent is running on this host")

// Acquire takes the reconcile lock without waiting: one converge,
// rollback or recovery at a time.
func (st Store) Acquire() (*Lock, error) { return st.acquire("lock") }

// AcquireDaemon takes the lock `agent run` holds for its lifetime, so a
// second daemon on the host is refused (`agent once` and `agent rollback`
// still work: they take only the reconcile lock).
func (st Store) AcquireDaemon() (*Lock, error) { return st.acquire("daemon.lock") }

func (st Store) acquire(name string) (*Lock, error) {
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(st.Dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (pid %s holds %s)", ErrLocked, strings.TrimSpace(string(pid)), path)
		}
		return nil, err
	}
	// The pid is only for the "held by" message.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN) // closing releases it anyway
	return l.f.Close()
}
