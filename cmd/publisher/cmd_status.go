package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cohuron/deploy/pkg/store"
)

// hostStatus is the part of an agent's status object the table shows
// (the agent writes it: pkg/agent HostStatus).
type hostStatus struct {
	Host        string `json:"host"`
	CurrentSeq  uint64 `json:"currentSeq"`
	Health      string `json:"health"`
	Blocked     string `json:"blocked"`
	LastAttempt *struct {
		Seq      uint64    `json:"seq"`
		Result   string    `json:"result"`
		Finished time.Time `json:"finished"`
		Error    string    `json:"error"`
	} `json:"lastAttempt"`
	Updated time.Time `json:"updated"`
}

func (c *CLI) status(ctx context.Context, args []string) error {
	var sf storeFlags
	var env string
	var asJSON bool
	fs := c.flags("status", "--store URL --env ENV [--json]")
	sf.add(fs)
	fs.StringVar(&env, "env", "", "environment")
	fs.BoolVar(&asJSON, "json", false, "print the status objects as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.fromTerraform(ctx, &sf, &env, nil, nil); err != nil {
		return err
	}
	if err := required("env", env, "store", sf.url); err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	rows, raw, err := c.hostStatuses(ctx, st, env)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.out, "no host has reported for %s in %s\n", env, st)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRELEASE\tHEALTH\tLAST CONVERGE\tRESULT\tERROR")
	for _, r := range rows {
		last, result, errText := "-", "-", r.Blocked
		if a := r.LastAttempt; a != nil {
			last = a.Finished.UTC().Format(time.RFC3339)
			result = fmt.Sprintf("%s (seq %d)", a.Result, a.Seq)
			if a.Error != "" {
				errText = a.Error
			}
		}
		if len(errText) > 100 {
			errText = errText[:100] + "…"
		}
		fmt.Fprintf(tw, "%s\tseq %d\t%s\t%s\t%s\t%s\n", r.Host, r.CurrentSeq, r.Health, last, result, errText)
	}
	return tw.Flush()
}

// hostStatuses reads every host's status object of env, with the raw
// bytes for --json. An unreadable object is a row saying so.
func (c *CLI) hostStatuses(ctx context.Context, st store.Store, env string) ([]hostStatus, []json.RawMessage, error) {
	keys, err := st.List(ctx, store.StatusPrefix(env))
	if err != nil {
		return nil, nil, err
	}
	var rows []hostStatus
	var raw []json.RawMessage
	for _, k := range keys {
		if !strings.HasSuffix(k, ".json") {
			continue
		}
		data, _, err := store.ReadAll(ctx, st, k, 1<<20)
		if err != nil {
			return nil, nil, err
		}
		var hs hostStatus
		if err := json.Unmarshal(data, &hs); err != nil {
			c.log.Warn("unreadable status object", "key", k, "err", err)
			hs.Host = strings.TrimSuffix(path.Base(k), ".json")
			hs.Health = "unreadable"
		}
		rows = append(rows, hs)
		raw = append(raw, data)
	}
	return rows, raw, nil
}
