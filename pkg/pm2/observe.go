package pm2

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// observation is what Status last read from PM2's CLI, with the marks PM2
// itself left on disk at that moment. PM2 writes its daemon's pid to
// PM2_HOME/pm2.pid and each process's to PM2_HOME/pids/<name>-<id>.pid,
// rewrites that file when it starts or restarts the process and removes
// it when it stops it. While the files say the same and each pid is the
// same process (its start time in /proc), PM2 started, stopped and
// restarted nothing, and the read stands: a poll reads a few small files
// instead of starting PM2's CLI (a Node process: 0.16–0.18 s of CPU and
// a 56 MiB child, every poll).
type observation struct {
	status map[string]Status
	marks  marks
}

// marks are the pid files of a PM2_HOME (its relative path → the pid
// they hold) and the start time of each of those processes.
type marks struct {
	files  map[string]int
	starts map[int]string
}

func (a marks) equal(b marks) bool {
	return maps.Equal(a.files, b.files) && maps.Equal(a.starts, b.starts)
}

// marks reads the pid files of m.Home; ok is false when they cannot be
// trusted to tell a change: no daemon pid file, a file that does not
// hold a pid, or a pid that is not a live process (PM2 is between
// states, or was killed without cleaning up).
func (m *Manager) marks() (marks, bool) {
	mk := marks{files: map[string]int{}, starts: map[int]string{}}
	paths := []string{"pm2.pid"}
	ents, err := os.ReadDir(filepath.Join(m.Home, "pids"))
	if err != nil {
		return mk, false
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pid") {
			paths = append(paths, filepath.Join("pids", e.Name()))
		}
	}
	for _, p := range paths {
		data, err := os.ReadFile(filepath.Join(m.Home, p))
		if err != nil {
			return mk, false
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			return mk, false
		}
		start, ok := startTime(pid)
		if !ok {
			return mk, false
		}
		mk.files[p], mk.starts[pid] = pid, start
	}
	return mk, true
}

// startTime is when pid started (clock ticks after boot, field 22 of
// /proc/pid/stat): a pid reused by another process has another. A
// zombie (exited, not yet reaped) is not alive.
func startTime(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')') // the command name may hold anything
	if i < 0 {
		return "", false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}

// settled reports whether list, read between two equal marks mk, is one
// the marks vouch for: every process online with its pid in a pid file,
// or stopped or errored (no pid), and every pid file's process listed. A
// process launching, stopping or waiting to restart changes state with
// no change of pid file: that read is not kept.
func settled(list []listed, mk marks) bool {
	online := map[int]bool{}
	for _, p := range list {
		switch {
		case p.PM2Env.Status == "online" && p.PID > 0:
			online[p.PID] = true
		case (p.PM2Env.Status == "stopped" || p.PM2Env.Status == "errored") && p.PID == 0:
		default:
			return false
		}
	}
	files := map[int]bool{}
	for p, pid := range mk.files {
		if p != "pm2.pid" {
			files[pid] = true
		}
	}
	return maps.Equal(online, files)
}

// forget drops the kept read: the next Status asks PM2.
func (m *Manager) forget() {
	m.mu.Lock()
	m.seen = nil
	m.mu.Unlock()
}

func cloneStatus(in map[string]Status) map[string]Status {
	out := make(map[string]Status, len(in))
	for k, s := range in {
		s.PIDs = slices.Clone(s.PIDs)
		out[k] = s
	}
	return out
}
