// Command agent runs on each host and converges it to the latest signed
// release: `agent run` (the systemd daemon), `agent once`, `agent plan`,
// `agent status`, `agent rollback`.
package main

import (
	"os"
	"time"
)

func main() {
	os.Exit(NewCLI(os.Stdout, os.Stderr, time.Now).Run(os.Args[1:]))
}
