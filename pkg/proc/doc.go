// Package proc runs child processes: the only package of the programs that
// imports os/exec.
//
// Every command gets an explicit environment (nothing is inherited), its
// own process group, an optional timeout, a kill sequence (SIGTERM to the
// whole group, SIGKILL after a grace period) and its combined output
// captured, keeping the tail for error messages. Run returns only after
// the process has been reaped, so a hook, a build step or a health check
// cannot leave a process behind when it times out or is cancelled.
//
// proc must never inherit the caller's environment, run a command through
// a shell it did not ask for, search the current directory for a program,
// or signal a process group once its leader has been reaped on its own
// (the group id may since have been reused).
package proc
