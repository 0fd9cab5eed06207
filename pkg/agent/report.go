package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cohuron/deploy/pkg/state"
	"github.com/cohuron/deploy/pkg/store"
)

// HostStatus is what a host reports to status/<env>/<host>.json and what
// `agent status` shows.
type HostStatus struct {
	Host        string                `json:"host"`
	Env         string                `json:"env"`
	CurrentSeq  uint64                `json:"currentSeq"`
	CurrentID   string                `json:"currentRelease,omitempty"`
	DesiredSeq  uint64                `json:"desiredSeq,omitempty"`
	Health      string                `json:"health"` // healthy, unhealthy, unknown
	LastAttempt *state.Attempt        `json:"lastAttempt,omitempty"`
	Blocked     string                `json:"blocked,omitempty"`
	Rollback    *state.RollbackRecord `json:"rollback,omitempty"`
	Kept        []string              `json:"kept,omitempty"`
	KnownBad    map[string]state.Bad  `json:"knownBad,omitempty"`
	NextPoll    time.Time             `json:"nextPoll,omitempty"`
	Converging  string                `json:"converging,omitempty"` // journal phase when a converge is in progress
	Updated     time.Time             `json:"updated"`
}

// Status builds the host status from the recorded state.
func (a *Agent) Status() (*HostStatus, error) {
	st, err := a.states.Load()
	if err != nil {
		return nil, err
	}
	j, err := a.states.LoadJournal()
	if err != nil {
		return nil, err
	}
	return a.statusOf(st, j), nil
}

func (a *Agent) statusOf(st *state.State, j *state.Journal) *HostStatus {
	hs := &HostStatus{Host: a.Cfg.HostID, Env: a.Cfg.Env, Health: "unknown", DesiredSeq: st.Desired,
		LastAttempt: st.Last, Rollback: st.Rollback, KnownBad: st.KnownBad, NextPoll: st.NextPoll, Updated: a.Now()}
	if st.Current != nil {
		hs.CurrentSeq, hs.CurrentID = st.Current.Seq, st.Current.ID
	}
	for _, r := range st.Previous {
		hs.Kept = append(hs.Kept, r.ID)
	}
	if st.Last != nil {
		hs.Blocked = st.Last.Blocked
		switch st.Last.Result {
		case ResultConverged, ResultRolledBack, "rolled-back-by-hand":
			hs.Health = "healthy"
		case "rollback-failed":
			hs.Health = "unhealthy"
		}
	}
	if j != nil {
		hs.Converging = fmt.Sprintf("%s seq %d", j.Phase, j.Seq)
	}
	return hs
}

// record stores an attempt and reports it to the store.
func (a *Agent) record(ctx context.Context, st *state.State, at *state.Attempt) {
	if at.Finished.IsZero() {
		at.Finished = a.Now()
	}
	st.Last = at
	if at.Seq > st.Desired {
		st.Desired = at.Seq
	}
	if st.Current != nil {
		a.Metrics.CurrentSeq.Store(int64(st.Current.Seq))
	}
	a.save(st)
	a.report(ctx, st)
}

func (a *Agent) save(st *state.State) {
	if err := a.states.Save(st); err != nil {
		a.Log.Error("saving agent state", "err", err)
	}
}

// report writes the host status object; a failure is logged, not fatal.
func (a *Agent) report(ctx context.Context, st *state.State) {
	hs := a.statusOf(st, nil)
	data, err := json.MarshalIndent(hs, "", "  ")
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Store.Put(ctx, store.StatusKey(a.Cfg.Env, a.Cfg.HostID), bytes.NewReader(data), int64(len(data))); err != nil {
		a.Log.Warn("reporting status to the store", "err", err)
		a.Metrics.StoreErrors.Add(1)
	}
}

// Metrics are the agent's Prometheus counters and gauges.
type Metrics struct {
	Polls, Converges, Rollbacks, Rejected, HealthFailures, StoreErrors, StoreRetries, Recoveries atomic.Int64
	LastConvergeMillis                                                                           atomic.Int64
	CurrentSeq, Up                                                                               atomic.Int64
}

// NewMetrics returns zeroed metrics.
func NewMetrics() *Metrics { return &Metrics{} }

// ServeHTTP writes the Prometheus text exposition.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	for _, c := range []struct {
		name, help, kind string
		v                int64
	}{
		{"cohuron_agent_polls_total", "Polls of the latest hint.", "counter", m.Polls.Load()},
		{"cohuron_agent_converges_total", "Successful converges.", "counter", m.Converges.Load()},
		{"cohuron_agent_rollbacks_total", "Rollbacks, automatic and by hand.", "counter", m.Rollbacks.Load()},
		{"cohuron_agent_rejected_total", "Releases rejected by verification.", "counter", m.Rejected.Load()},
		{"cohuron_agent_health_failures_total", "Health waits that failed.", "counter", m.HealthFailures.Load()},
		{"cohuron_agent_store_errors_total", "Store requests that failed.", "counter", m.StoreErrors.Load()},
		{"cohuron_agent_store_retries_total", "Store requests retried after a transient failure.", "counter", m.StoreRetries.Load()},
		{"cohuron_agent_recoveries_total", "Interrupted converges recovered at start.", "counter", m.Recoveries.Load()},
		{"cohuron_agent_current_seq", "Seq of the release running on this host.", "gauge", m.CurrentSeq.Load()},
		{"cohuron_agent_last_converge_milliseconds", "Duration of the last successful converge.", "gauge", m.LastConvergeMillis.Load()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", c.name, c.help, c.name, c.kind, c.name, c.v)
	}
}

// NoteNextPoll records when the daemon polls next, for `agent status`.
// It is called only after a reconcile that changed or failed something,
// never on an idle poll; if a reconcile holds the lock it is skipped.
func (a *Agent) NoteNextPoll(t time.Time) {
	lock, err := a.states.Acquire()
	if err != nil {
		return
	}
	defer lock.Release()
	st, err := a.states.Load()
	if err != nil {
		return
	}
	st.NextPoll = t.UTC()
	a.save(st)
}
