// Package store defines the narrow interface between the programs and
// where releases live (a directory or an S3 bucket), with its errors and
// key rules. Implementations live in subpackages; openstore picks one by
// URL; storetest holds the conformance suite every implementation passes.
//
// Store layout under the prefix: bundles/<name>.tar.gz(.sig),
// releases/<env>/<seq>.yaml(.sig) written once, releases/<env>/latest (an
// unsigned hint), status/<env>/<host>.json.
package store
