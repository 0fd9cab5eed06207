package agent

import (
	"context"
	"os"
	"strconv"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/state"
)

// maxCrashes is how often a release may be interrupted by an agent crash
// before it is treated as bad (it may be what crashes the agent).
const maxCrashes = 3

// recover finishes a converge interrupted by a crash: before the switch
// the staged directory is dropped; after it, the host returns wholly to
// the previous release. Either way the host ends on one release.
func (a *Agent) recover(ctx context.Context, st *state.State) error {
	if err := a.recoverRoot(st); err != nil {
		return err
	}
	j, err := a.states.LoadJournal()
	if err != nil || j == nil {
		return err
	}
	a.Log.Warn("found an interrupted converge; recovering", "phase", j.Phase, "kind", j.Kind, "seq", j.Seq)
	a.Metrics.Recoveries.Add(1)
	if st.Current != nil && st.Current.Dir == j.NewDir && st.Current.Digest == j.Digest && st.LastDigest == j.Digest && j.Phase != state.PhaseRollingBack {
		// The converge was committed; only clearing the journal was lost.
		a.Log.Info("recovery: the interrupted converge had completed; keeping it", "seq", j.Seq)
		return a.states.ClearJournal()
	}
	key := strconv.FormatUint(j.Seq, 10)
	if st.CrashCount == nil {
		st.CrashCount = map[string]int{}
	}
	st.CrashCount[key]++
	if st.CrashCount[key] >= maxCrashes {
		st.MarkBad(j.Seq, j.Digest, "interrupted by an agent crash "+strconv.Itoa(st.CrashCount[key])+" times", a.Now())
	}
	prev := a.journalPrev(st, j)
	undone := ""
	if j.Compose || j.Schema != nil {
		undone = a.undoInterrupted(ctx, j, prev)
	}
	switch j.Phase {
	case state.PhaseStaging:
		os.RemoveAll(j.NewDir + ".tmp")
		if st.Current == nil || st.Current.Dir != j.NewDir {
			os.RemoveAll(j.NewDir)
		}
	default:
		var interrupted *manifest.Spec
		if len(j.Procs) > 0 {
			interrupted = &manifest.Spec{}
			for _, name := range j.Procs {
				interrupted.Processes = append(interrupted.Processes, manifest.Process{Name: name})
			}
		}
		switch {
		case prev != nil:
			if err := a.restore(ctx, prev, interrupted); err != nil {
				a.Log.Error("recovery: restoring the previous release failed", "to", prev.ID, "err", err)
				a.record(ctx, st, &state.Attempt{Seq: j.Seq, Started: j.Started, Finished: a.Now(), Result: "rollback-failed",
					Error: "recovering from a crash: " + err.Error(), Blocked: "rollback failed: a human must look"})
				return err
			}
			if st.Current == nil || st.Current.Dir != prev.Dir {
				cp := *prev
				st.Current = &cp
			}
			if j.NewDir != prev.Dir {
				os.RemoveAll(j.NewDir)
			}
		case j.Kind == state.KindInstall:
			// A first install interrupted after its switch: nothing older
			// to return to; remove it and install again.
			if interrupted != nil {
				a.stopQuietly(ctx, j.Procs)
			}
			if target, _, _ := a.rootTarget(); target == j.NewDir {
				os.Remove(a.Cfg.Root)
			}
			if st.Current == nil || st.Current.Dir != j.NewDir {
				os.RemoveAll(j.NewDir)
			}
		default:
			// A repair of the running release: the next reconcile repairs
			// again; nothing here is older or newer than it.
		}
	}
	st.LatestETag = "" // re-read latest: the interrupted release may be retried
	if err := a.states.ClearJournal(); err != nil {
		return err
	}
	a.record(ctx, st, &state.Attempt{Seq: j.Seq, Digest: j.Digest, Started: j.Started, Finished: a.Now(), Result: "interrupted",
		Error:  "the agent stopped during phase " + j.Phase + " (" + j.Kind + "); the host was returned to the release it ran before",
		Schema: undone})
	return nil
}

// journalPrev finds the release the journal's converge started from.
func (a *Agent) journalPrev(st *state.State, j *state.Journal) *state.Release {
	if j.PrevDir == "" {
		return nil
	}
	if st.Current != nil && st.Current.Dir == j.PrevDir {
		return st.Current
	}
	for i := range st.Previous {
		if st.Previous[i].Dir == j.PrevDir {
			return &st.Previous[i]
		}
	}
	return nil
}

// stopQuietly stops processes, logging failures: it runs on paths that
// are already handling a failure.
func (a *Agent) stopQuietly(ctx context.Context, names []string) {
	if err := a.Procs.Stop(ctx, names); err != nil {
		a.Log.Warn("stopping processes", "names", names, "err", err)
	}
}
