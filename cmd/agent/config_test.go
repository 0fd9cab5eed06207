package main

import (
	"flag"
	"io"
	"testing"
	"time"
)

// TestExampleConfigLoads keeps packaging/agent.yaml.example in step with
// Config: strict decoding refuses a field the agent does not know.
func TestExampleConfigLoads(t *testing.T) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf := addConfigFlags(fs)
	if err := fs.Parse([]string{"--config", "../../packaging/agent.yaml.example", "--store-timeout", "7s"}); err != nil {
		t.Fatal(err)
	}
	c, err := cf.load()
	if err != nil {
		t.Fatalf("loading the example config: %v", err)
	}
	if c.Env != "prod" || c.StoreTimeout.Duration != 7*time.Second {
		t.Errorf("env %q, storeTimeout %s; want prod and the flag's 7s over the file's 30s", c.Env, c.StoreTimeout.Duration)
	}
}
