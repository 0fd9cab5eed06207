package tfoutput

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/cohuron/deploy/pkg/proc"
)

// Names of the infra-tf root outputs read here (infra-tf/outputs.tf).
const (
	OutStoreURL = "store_url"
	OutRegion   = "region"
	OutEnv      = "env"
	OutKMSKey   = "kms_key_uri"
)

// Names lists every output Read requires.
var Names = []string{OutStoreURL, OutRegion, OutEnv, OutKMSKey}

// Outputs are the values of an applied infra-tf root.
type Outputs struct {
	Dir      string // the Terraform working directory they came from
	StoreURL string // s3://bucket/prefix
	Region   string
	Env      string
	KMSKey   string // a KEYREF: awskms:///arn:aws:kms:… from infra-tf (a root of another kind may name a cosign key file)
}

// Read runs `terraform output -json` in dir (initialised, or holding a
// local terraform.tfstate) with the terraform found on env's PATH.
func Read(ctx context.Context, dir string, env []string) (*Outputs, error) {
	bin, err := proc.LookPath("terraform", env)
	if err != nil {
		return nil, fmt.Errorf("reading outputs of %s: terraform is not installed (needed for --terraform-dir): %w", dir, err)
	}
	tf, err := tfexec.NewTerraform(dir, bin)
	if err != nil {
		return nil, fmt.Errorf("reading outputs of %s: %w", dir, err)
	}
	var stderr bytes.Buffer
	tf.SetStderr(&stderr)
	out, err := tf.Output(ctx)
	if err != nil {
		// tfexec's error repeats all of stderr; keep terraform's reason.
		if stderr.Len() > 0 {
			return nil, fmt.Errorf("terraform output -json in %s failed%s", dir, stderrTail(stderr.String()))
		}
		return nil, fmt.Errorf("terraform output -json in %s: %w", dir, err)
	}
	return parse(dir, out)
}

func parse(dir string, out map[string]tfexec.OutputMeta) (*Outputs, error) {
	if len(out) == 0 {
		return nil, fmt.Errorf("terraform output -json in %s: expected the outputs of an applied infra-tf root (%s), found none: run terraform apply there first, or terraform init if its state is remote", dir, strings.Join(Names, ", "))
	}
	o := &Outputs{Dir: dir}
	var problems []string
	for _, f := range []struct {
		name string
		dst  *string
	}{{OutStoreURL, &o.StoreURL}, {OutRegion, &o.Region}, {OutEnv, &o.Env}, {OutKMSKey, &o.KMSKey}} {
		m, ok := out[f.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("output %s: expected a string, found no such output", f.name))
			continue
		}
		if err := json.Unmarshal(m.Value, f.dst); err != nil || *f.dst == "" {
			problems = append(problems, fmt.Sprintf("output %s: expected a non-empty string, found %s", f.name, bytes.TrimSpace(m.Value)))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("terraform outputs of %s: %s", dir, strings.Join(problems, "; "))
	}
	if !strings.HasPrefix(o.StoreURL, "s3://") && !strings.HasPrefix(o.StoreURL, "file://") {
		return nil, fmt.Errorf("terraform output %s of %s: expected s3://bucket/prefix, found %q", OutStoreURL, dir, o.StoreURL)
	}
	return o, nil
}

// stderrTail keeps terraform's own explanation: its "Error:" line and
// the line after it (e.g. `Backend initialization required, please run
// "terraform init"`), without the box drawing and warnings around it.
func stderrTail(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(strings.Trim(strings.TrimSpace(l), "│╷╵")); l != "" {
			lines = append(lines, l)
		}
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "Error:") {
			if i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "Error:") {
				return ": " + l + " (" + lines[i+1] + ")"
			}
			return ": " + l
		}
	}
	if len(lines) > 0 {
		return ": " + lines[len(lines)-1]
	}
	return ""
}
