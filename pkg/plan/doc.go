// Package plan decides what a converge must do, and why: a pure function
// from the desired release, the recorded state and the observed host to
// an ordered list of steps, each with its reason ("env file apps/api/.env
// changed: JWT_SECRET ref", "process cohuron-api not running").
//
// It does no I/O and imports only manifest and state, so `agent plan` and
// `agent once` decide alike and the decisions are unit-testable.
package plan
