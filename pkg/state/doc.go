// Package state keeps what an agent knows about its host across restarts:
// the release it runs and the ones it keeps for rollback, the last attempt
// and its error, releases known to be bad, and the journal of a converge in
// progress. Every write is atomic (temp file, fsync, rename, fsync dir),
// so a crash leaves the old file or the new one, never a mix. A file lock
// keeps a second agent out.
//
// It stores facts; it never decides what to do with them (that is plan)
// and never touches the release tree (that is the agent).
package state
