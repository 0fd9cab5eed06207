// Package fault classifies errors by how they must be handled, not by
// their text, and maps each class to a documented exit code.
//
// Rejected input (bad signature, policy, replay, expiry, unsafe archive)
// needs a human and is never retried; transient errors (store unreachable)
// are retried; usage errors are the caller's. Callers wrap errors with %w
// as usual; Kind finds the classification anywhere in the chain.
package fault
