package systemd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/pm2"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/state"
)

// Prefix starts the name of every unit this package writes; it keeps the
// app's units apart from the agent's own (cohuron-agent.service).
const Prefix = "cohuron-app-"

// Manager writes and drives the units.
type Manager struct {
	UnitDir   string   // default /etc/systemd/system
	Systemctl string   // default systemctl
	Env       []string // environment for systemctl
	Run       func(ctx context.Context, c proc.Cmd) (proc.Result, error)
}

// Unit renders the unit file of one process. cluster mode is not
// available here: several instances would need a template unit and a
// shared socket, which PM2 does for us.
func Unit(root string, spec *manifest.Spec, p manifest.Process) (string, error) {
	if p.Mode == "cluster" {
		return "", fmt.Errorf("process %s: cluster mode needs PM2; use mode fork with the systemd manager", p.Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by cohuron-agent; changes are overwritten on the next release.\n[Unit]\nDescription=Cohuron %s\nAfter=network-online.target\n\n[Service]\n", p.Name)
	fmt.Fprintf(&b, "WorkingDirectory=%s\n", filepath.Join(root, p.Cwd))
	if p.EnvFile != "" {
		fmt.Fprintf(&b, "EnvironmentFile=%s\n", filepath.Join(root, p.EnvFile))
	}
	quoted := make([]string, len(p.Command))
	for i, a := range p.Command {
		quoted[i] = strconv.Quote(a)
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(quoted, " "))
	if spec.User != "" {
		fmt.Fprintf(&b, "User=%s\n", spec.User)
	}
	b.WriteString("Restart=always\nRestartSec=1\nKillMode=mixed\nTimeoutStopSec=10\nNoNewPrivileges=true\n\n[Install]\nWantedBy=multi-user.target\n")
	return b.String(), nil
}

func (m *Manager) unitDir() string {
	if m.UnitDir == "" {
		return "/etc/systemd/system"
	}
	return m.UnitDir
}

// Apply writes the units of the named processes and restarts them.
func (m *Manager) Apply(ctx context.Context, root string, spec *manifest.Spec, _ map[string]map[string]string, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var units []string
	for _, p := range spec.Processes {
		if len(names) > 0 && !want[p.Name] {
			continue
		}
		text, err := Unit(root, spec, p)
		if err != nil {
			return err
		}
		unit := Prefix + p.Name + ".service"
		if err := state.WriteFile(filepath.Join(m.unitDir(), unit), []byte(text), 0o644); err != nil {
			return err
		}
		units = append(units, unit)
	}
	if len(units) == 0 {
		return nil
	}
	if _, err := m.systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	_, err := m.systemctl(ctx, append([]string{"restart"}, units...)...)
	return err
}

// Stop stops the units and removes their files.
func (m *Manager) Stop(ctx context.Context, names []string) error {
	for _, n := range names {
		unit := Prefix + n + ".service"
		if _, err := os.Stat(filepath.Join(m.unitDir(), unit)); os.IsNotExist(err) {
			continue // never written, or already stopped
		}
		if _, err := m.systemctl(ctx, "stop", unit); err != nil {
			return err
		}
		os.Remove(filepath.Join(m.unitDir(), unit))
	}
	_, err := m.systemctl(ctx, "daemon-reload")
	return err
}

// Status reports every unit this package wrote.
func (m *Manager) Status(ctx context.Context) (map[string]pm2.Status, error) {
	files, _ := filepath.Glob(filepath.Join(m.unitDir(), Prefix+"*.service"))
	res := map[string]pm2.Status{}
	for _, f := range files {
		unit := filepath.Base(f)
		name := strings.TrimSuffix(strings.TrimPrefix(unit, Prefix), ".service")
		out, err := m.systemctl(ctx, "show", "--property=ActiveState,SubState,NRestarts,MainPID", unit)
		if err != nil {
			return nil, err
		}
		props := map[string]string{}
		for _, line := range bytes.Split(out, []byte("\n")) {
			k, v, _ := strings.Cut(string(line), "=")
			props[k] = strings.TrimSpace(v)
		}
		s := pm2.Status{Name: name, State: props["ActiveState"]}
		s.Running = props["ActiveState"] == "active" && props["SubState"] == "running"
		s.Restarts, _ = strconv.Atoi(props["NRestarts"])
		if pid, _ := strconv.Atoi(props["MainPID"]); pid > 0 {
			s.PIDs = []int{pid}
		}
		if props["ActiveState"] == "failed" {
			s.State = "errored"
		}
		res[name] = s
	}
	return res, nil
}

func (m *Manager) systemctl(ctx context.Context, args ...string) ([]byte, error) {
	bin := m.Systemctl
	if bin == "" {
		bin = "systemctl"
	}
	res, err := m.Run(ctx, proc.Cmd{Name: bin, Args: args, Env: m.Env, Timeout: 2 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("systemctl %s: %w", args[0], err)
	}
	return res.Output, nil
}
