package realapp

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// binDir holds the freshly built publisher and agent.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cohuron-realapp-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if out, err := exec.Command("go", "build", "-o", dir+"/", "../../cmd/publisher", "../../cmd/agent").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
