package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/state"
)

// rollbackAfterFailure returns the host to prev after a failure past the
// switch, remembers the release as bad, and reports.
func (a *Agent) rollbackAfterFailure(ctx context.Context, st *state.State, at *state.Attempt, out *Outcome, prev *state.Release, failed *manifest.Spec, undo func(context.Context) (string, error), cause error) (*Outcome, error) {
	a.Log.Error("converge failed after the switch; rolling back", "seq", at.Seq, "to", prev.ID, "err", cause)
	// Services and schema first: the previous code starts against them.
	var rbErr error
	if undo != nil {
		at.Schema, rbErr = undo(ctx)
	}
	if err := a.restore(ctx, prev, failed); err != nil {
		rbErr = errors.Join(rbErr, err)
	}
	at.Finished = a.Now()
	st.LastSeq, st.LastDigest = at.Seq, at.Digest
	st.MarkBad(at.Seq, at.Digest, cause.Error(), a.Now())
	st.Rollback = &state.RollbackRecord{From: fmt.Sprintf("seq %d", at.Seq), To: prev.ID, Reason: cause.Error(), When: a.Now()}
	a.Metrics.Rollbacks.Add(1)
	if rbErr != nil {
		at.Result, out.Result = "rollback-failed", "rollback-failed"
		at.Error = fmt.Sprintf("%v; rollback to %s failed: %v", cause, prev.ID, rbErr)
		at.Blocked = "rollback failed: a human must look"
		a.record(ctx, st, at)
		return out, fault.RollbackFailed(errors.New(at.Error))
	}
	at.Result, out.Result = ResultRolledBack, ResultRolledBack
	at.Error = cause.Error()
	at.Blocked = fmt.Sprintf("known-bad: seq %d failed and was rolled back to %s", at.Seq, prev.ID)
	a.record(ctx, st, at)
	if err := a.states.ClearJournal(); err != nil {
		return out, err
	}
	return out, fault.ConvergeFailed(fmt.Errorf("seq %d failed and was rolled back to %s: %w", at.Seq, prev.ID, cause))
}

// restore switches the root back to rel, restarts all of its processes
// with its own env files, stops those only the failed spec had, and
// checks health.
func (a *Agent) restore(ctx context.Context, rel *state.Release, failed *manifest.Spec) error {
	j, _ := a.states.LoadJournal()
	if j != nil {
		j.Phase = state.PhaseRollingBack
		if err := a.states.WriteJournal(j); err != nil {
			return err
		}
	}
	a.crashPoint("rolling-back")
	if err := a.switchRoot(rel.Dir); err != nil {
		return err
	}
	if rel.Spec == nil {
		// An adopted tree: its processes were the old deploy script's, not
		// ours; stop the ones the failed release started.
		if failed != nil {
			var names []string
			for _, p := range failed.Processes {
				names = append(names, p.Name)
			}
			if err := a.Procs.Stop(ctx, names); err != nil {
				return err
			}
		}
		if a.Legacy != nil {
			return a.Legacy.Restore(ctx)
		}
		return nil
	}
	keep := map[string]bool{}
	var names []string
	for _, p := range rel.Spec.Processes {
		keep[p.Name] = true
		names = append(names, p.Name)
	}
	if failed != nil {
		var extra []string
		for _, p := range failed.Processes {
			if !keep[p.Name] {
				extra = append(extra, p.Name)
			}
		}
		if len(extra) > 0 {
			if err := a.Procs.Stop(ctx, extra); err != nil {
				return err
			}
		}
	}
	envs, err := a.readEnvs(rel.Dir)
	if err != nil {
		return err
	}
	if err := a.Procs.Apply(ctx, a.Cfg.Root, rel.Spec, envs, names); err != nil {
		return err
	}
	return a.waitHealthy(ctx, rel.Spec, names, nil)
}

// Rollback returns the host by hand to a previous release (the newest when
// to is empty), and marks the current one bad so the loop does not
// re-apply it until a newer seq is published.
func (a *Agent) Rollback(ctx context.Context, to string) (*state.Release, error) {
	lock, st, err := a.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if st.Current == nil {
		return nil, fault.Usage(errors.New("nothing to roll back: no release is installed"))
	}
	idx := -1
	for i, r := range st.Previous {
		if to == "" || r.ID == to || strconv.FormatUint(r.Seq, 10) == to {
			idx = i
			break
		}
	}
	if idx < 0 {
		var ids []string
		for _, r := range st.Previous {
			ids = append(ids, r.ID)
		}
		return nil, fault.Usage(fmt.Errorf("no previous release %q on this host; kept: %v", to, ids))
	}
	target := st.Previous[idx]
	cur := *st.Current
	if fi, err := os.Stat(target.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("release %s is recorded but its directory %s is gone; choose another with --to", target.ID, target.Dir)
	}
	if err := a.states.WriteJournal(&state.Journal{Phase: state.PhaseSwitching, Seq: target.Seq, Digest: target.Digest, NewDir: target.Dir, PrevDir: cur.Dir, Started: a.Now()}); err != nil {
		return nil, err
	}
	// Compose back to the target's definition first (its processes start
	// against it). The schema stays as it is: a manual rollback never
	// restores a dump.
	var rbErr error
	if cur.Compose != nil && target.Compose != nil && cur.Compose.Key != target.Compose.Key {
		_, rbErr = a.undoServices(ctx, &target, currentAsRelease(&cur), true, nil)
	}
	if err := a.restore(ctx, &target, cur.Spec); err != nil || rbErr != nil {
		err = errors.Join(rbErr, err)
		at := &state.Attempt{Seq: target.Seq, Started: a.Now(), Finished: a.Now(), Result: "rollback-failed",
			Error: fmt.Sprintf("manual rollback to %s failed: %v", target.ID, err), Blocked: "rollback failed: a human must look"}
		a.record(ctx, st, at)
		return nil, fault.RollbackFailed(errors.New(at.Error))
	}
	if cur.Seq > 0 {
		st.MarkBad(cur.Seq, cur.Digest, "rolled back by hand to "+target.ID, a.Now())
	}
	// The release left behind is known bad now: it is not a rollback target.
	st.Previous = append(st.Previous[:idx:idx], st.Previous[idx+1:]...)
	if cur.Seq == 0 { // an adopted tree stays available
		st.Previous = append([]state.Release{cur}, st.Previous...)
	}
	st.Current = &target
	st.Rollback = &state.RollbackRecord{From: cur.ID, To: target.ID, Reason: "agent rollback", When: a.Now(), Manual: true}
	a.Metrics.Rollbacks.Add(1)
	a.record(ctx, st, &state.Attempt{Seq: target.Seq, Digest: target.Digest, Started: a.Now(), Finished: a.Now(), Result: "rolled-back-by-hand",
		Blocked: fmt.Sprintf("seq %d rolled back by hand; publish a newer release to move on", cur.Seq)})
	return &target, a.states.ClearJournal()
}
