// Package trust reads trust policies (policies/*.yaml) and decides whether
// a release may be applied: signatures by enough trusted keys, the right
// environment and branch, fresh, not a replay, within size limits.
//
// Every refusal is a *VerificationError naming what was checked, what was
// expected and what was found. This package decides; it never fetches,
// applies or retries anything.
package trust
