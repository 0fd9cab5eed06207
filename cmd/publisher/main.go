// Command publisher turns a git commit into a signed, reproducible bundle
// and a signed release manifest, and uploads both to a store.
package main

import (
	"os"
	"time"
)

func main() {
	os.Exit(NewCLI(os.Stdin, os.Stdout, os.Stderr, time.Now).Run(os.Args[1:]))
}
