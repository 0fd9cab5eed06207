// Package release publishes signed releases to a store and verifies them
// the way an agent does.
//
// Publishing uploads the bundle and its signature, then claims the next
// seq with a conditional write of releases/<env>/<seq>.yaml and its
// signature, and writes the unsigned latest hint last. Verification reads
// the hint, then trusts only signed bytes: signature before parsing, then
// the release's claims, then the bundle's digest and signature.
package release
