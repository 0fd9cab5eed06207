// Package manifesttest provides valid manifests for tests: a minimal
// environment manifest in YAML with known line numbers, a way to mutate it
// into a bad one, and a valid release built by hand. It is for tests only.
package manifesttest
