// Package envvars names every environment variable the programs read, in
// one place, so operators can find them all and code reads none by
// accident. Library code takes values as arguments; only main packages and
// test setup call Get.
package envvars
