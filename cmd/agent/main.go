// Command agent runs on each host and converges it to the latest signed
// release. It is built in the next milestone (issue 3); until then it only
// says so, so no one mistakes it for a working agent.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "agent: not implemented yet; use `publisher verify` to check a release as the agent will")
	os.Exit(1)
}
