// Package strictyaml decodes untrusted YAML documents into Go structs and
// reports every problem as "file:line: message".
//
// It rejects what a hand-edited manifest should never contain: unknown
// fields, duplicate keys, anchors, aliases and merge keys, explicit tags
// beyond the core ones, null values, several documents, wrong types and
// input over a size cap. It never guesses: a document that does not
// decode cleanly is an error.
package strictyaml
