package tfcheck

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/internal/testenv"
)

const infraTF = "../../infra-tf"

// TestInfraTF: the repository's Terraform is structurally sound and
// formatted as `terraform fmt` wants it.
func TestInfraTF(t *testing.T) {
	for _, root := range []string{infraTF, filepath.Join(infraTF, "bootstrap")} {
		for _, p := range Check(root) {
			t.Errorf("%s", p)
		}
	}

	tf := testenv.Bin(t, "terraform")
	if out, err := exec.Command(tf, "fmt", "-check", "-recursive", "-diff", infraTF).CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check -recursive -diff %s: %v (run `terraform fmt -recursive infra-tf`)\n%s", infraTF, err, out)
	}
	// fmt takes only .tf and .tfvars files: check the examples as .tfvars.
	dir := t.TempDir()
	for _, name := range []string{"terraform.tfvars.example", "backend.hcl.example"} {
		src, err := os.ReadFile(filepath.Join(infraTF, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".tfvars"), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(tf, "fmt", "-check", "-diff", dir).CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: infra-tf/*.example are not formatted: %v\n%s", err, out)
	}
}

// TestDefects: each fixture holds defects of one kind; Check must report
// each of them at its file and line, and nothing else.
func TestDefects(t *testing.T) {
	type want struct {
		file string // relative to the fixture
		line int
		text string // part of the message
	}
	cases := map[string][]want{
		"clean": nil,
		"unknown_argument": {
			{"main.tf", 5, `argument "sizes" is not a variable`},
		},
		"missing_required": {
			{"main.tf", 1, `required variable "name"`},
		},
		"unknown_output": {
			{"main.tf", 11, `declares no output "outs"`},
			{"main.tf", 15, `no module "other" is called`},
		},
		"undeclared_var": {
			{"main.tf", 11, `var.label: no variable "label"`},
			{"child/main.tf", 6, `var.size: no variable "size"`},
		},
		"iam_wildcard": {
			{"main.tf", 3, `statement (Effect Allow) grants action "s3:*"`},
			{"main.tf", 9, `statement (Effect Allow) uses NotAction`},
			{"main.tf", 16, `grants s3:GetObject on resource "*"`},
			{"main.tf", 23, `statement (Effect Allow) grants action "*"`},
			{"main.tf", 41, `jsonencode() policy statement (Effect Allow) grants action "kms:*"`},
			{"main.tf", 45, `jsonencode() policy statement (Effect Allow) grants action "*"`},
			{"main.tf", 50, `jsonencode() policy statement (Effect Allow) uses NotAction`},
			{"main.tf", 56, `grants s3:ListBucket on resource "*"`},
		},
		"template_vars": {
			{"script.sh.tftpl", 3, `template uses ${region}, which templatefile() at`},
			{"main.tf", 8, `passes "unused", which template`},
		},
		"missing_file": {
			{"main.tf", 7, `file(): expected an existing file`},
			{"main.tf", 8, `templatefile(): expected an existing template`},
		},
		"tfvars": {
			{"terraform.tfvars.example", 1, `does not set required variable "region"`},
			{"terraform.tfvars.example", 2, `sets "regoin", which is not a variable`},
		},
		"bad_source": {
			{"main.tf", 1, `source "./modules/gone": expected a directory with .tf files`},
		},
		"syntax_error": {
			{"main.tf", 6, `Invalid expression`},
		},
	}
	for name, wants := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			got := Check(dir)
			for _, w := range wants {
				file := filepath.Join(dir, w.file)
				found := slices.ContainsFunc(got, func(p Problem) bool {
					return p.File == file && p.Line == w.line && strings.Contains(p.Message, w.text)
				})
				if !found {
					t.Errorf("expected %s:%d: …%s…; got:\n%s", file, w.line, w.text, list(got))
				}
			}
			if len(got) != len(wants) {
				t.Errorf("expected %d problem(s), got %d:\n%s", len(wants), len(got), list(got))
			}
		})
	}
}

func list(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\t%s\n", p)
	}
	return b.String()
}

// TestUserDataRenders renders the hosts' templates as Terraform's
// templatefile() does (the same HCL template engine) with realistic values
// and checks the result: a bash script that parses, fails on error, fits
// EC2's user data limit and writes exactly the files the agent reads,
// with an agent.yaml whose fields are cmd/agent's.
func TestUserDataRenders(t *testing.T) {
	const module = infraTF + "/modules/ec2"
	agentYAML := strings.TrimRight(render(t, module+"/agent.yaml.tftpl", map[string]string{
		"store_url": "s3://cohuron-code-prod-123456789012/deploy",
		"env":       "prod",
		"host_id":   "prod-1",
		"region":    "us-east-1",
		"interval":  "30s",
		"jitter":    "10s",
	}), "\r\n") // chomp(), as modules/ec2 passes it
	policy := readChomped(t, "../../policies/prod.yaml")
	unit := readChomped(t, "../../packaging/cohuron-agent.service")
	pub := publicKeyPEM(t)
	script := render(t, module+"/user-data.sh.tftpl", map[string]string{
		"host_id":             "prod-1",
		"env":                 "prod",
		"region":              "us-east-1",
		"artifacts_bucket":    "cohuron-artifacts-prod-123456789012",
		"agent_binary_key":    "agent/v1.0.0/cohuron-agent-linux-amd64",
		"agent_binary_sha256": strings.Repeat("ab", 32),
		"app_user":            "cohuron",
		"npm_packages":        "pnpm@9 pm2@7",
		"agent_config":        agentYAML,
		"trust_policy":        policy,
		"signing_public_key":  pub,
		"agent_unit":          unit,
	})

	// A script bash accepts, that stops at the first failure.
	if len(script) > 16<<10 {
		t.Errorf("user data is %d bytes; EC2 takes at most 16 KiB", len(script))
	}
	if !strings.HasPrefix(script, "#!/bin/bash\n") {
		t.Errorf("user data must start with #!/bin/bash (cloud-init runs it as a script)")
	}
	if first := firstCommand(script); first != "set -euo pipefail" {
		t.Errorf("first command of the user data: expected `set -euo pipefail`, found %q", first)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		testenv.Missing(t, "bash", err.Error())
	}
	path := filepath.Join(t.TempDir(), "user-data.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bash, "-n", path)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("bash -n on the rendered user data: %v\n%s\n--- script:\n%s", err, stderr.String(), script)
	}

	// The binary is checked before it is installed.
	if !regexp.MustCompile(`(?m)^echo "` + strings.Repeat("ab", 32) + `  \S+" \| sha256sum --check`).MatchString(script) {
		t.Errorf("user data does not check the agent binary against agent_binary_sha256 with sha256sum --check")
	}
	installAt := strings.Index(script, "/usr/local/bin/cohuron-agent\n")
	if check := strings.Index(script, "sha256sum --check"); installAt < 0 || check > installAt {
		t.Errorf("user data must install /usr/local/bin/cohuron-agent after sha256sum --check")
	}

	// The files it writes: the contents Terraform passed, byte for byte (a
	// here-document delimiter inside a file would cut it short).
	files := heredocs(script)
	for path, want := range map[string]string{
		"/etc/cohuron-agent/agent.yaml":             agentYAML,
		"/etc/cohuron-agent/policy.yaml":            policy,
		"/etc/cohuron-agent/keys/ci-kms.pub":        pub,
		"/etc/systemd/system/cohuron-agent.service": unit,
	} {
		if got, ok := files[path]; !ok {
			t.Errorf("user data does not write %s (writes %v)", path, slices.Sorted(mapsKeys(files)))
		} else if got != want {
			t.Errorf("user data writes %s as:\n%s\nexpected:\n%s", path, got, want)
		}
	}

	// agent.yaml: only fields cmd/agent knows, durations it can parse, and
	// the paths the script writes.
	fields, durations := agentConfigFields(t)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(agentYAML), &cfg); err != nil {
		t.Fatalf("rendered agent.yaml: %v\n%s", err, agentYAML)
	}
	for key, v := range cfg {
		switch {
		case !fields[key]:
			t.Errorf("agent.yaml field %q: cmd/agent's Config has no such yaml field", key)
		case durations[key]:
			if _, err := time.ParseDuration(fmt.Sprint(v)); err != nil {
				t.Errorf("agent.yaml %s: %v", key, err)
			}
		}
	}
	for _, key := range []string{"store", "env", "policy", "hostId", "awsRegion"} {
		if cfg[key] == nil {
			t.Errorf("agent.yaml: expected field %q", key)
		}
	}
	if p := fmt.Sprint(cfg["policy"]); files[p] != policy {
		t.Errorf("agent.yaml policy: %s is not where user data writes the trust policy", p)
	}
	if !strings.Contains(unit, "ExecStart=/usr/local/bin/cohuron-agent run --config /etc/cohuron-agent/agent.yaml") {
		t.Errorf("packaging/cohuron-agent.service: ExecStart no longer runs /usr/local/bin/cohuron-agent with /etc/cohuron-agent/agent.yaml; update the user data")
	}

	// The trust policy's key files are the ones user data writes.
	var tp struct {
		Spec struct {
			Signers []struct {
				PublicKeyFile string `yaml:"publicKeyFile"`
			} `yaml:"signers"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(policy), &tp); err != nil {
		t.Fatal(err)
	}
	for _, s := range tp.Spec.Signers {
		if s.PublicKeyFile != "" && files[s.PublicKeyFile] != pub {
			t.Errorf("policies/prod.yaml trusts %s, which user data does not write", s.PublicKeyFile)
		}
	}
}

// render evaluates a template file with string variables, as templatefile().
func render(t *testing.T, path string, vars map[string]string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", path, diags)
	}
	vals := map[string]cty.Value{}
	for k, v := range vars {
		vals[k] = cty.StringVal(v)
	}
	v, diags := tmpl.Value(&hcl.EvalContext{Variables: vals})
	if diags.HasErrors() {
		t.Fatalf("rendering %s: %v", path, diags)
	}
	return v.AsString()
}

func readChomped(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(b), "\r\n")
}

// publicKeyPEM is what aws_kms_public_key's public_key_pem looks like for
// an ECC_NIST_P256 key.
func publicKeyPEM(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "\n")
}

// firstCommand is the first line of a script that is not a comment.
func firstCommand(script string) string {
	for _, line := range strings.Split(script, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	return ""
}

// heredocs returns what `cat >PATH <<'DELIM'` commands write, by path.
func heredocs(script string) map[string]string {
	start := regexp.MustCompile(`^cat >(\S+) <<'(\w+)'$`)
	files := map[string]string{}
	lines := strings.Split(script, "\n")
	for i := 0; i < len(lines); i++ {
		m := start.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		var body []string
		for i++; i < len(lines) && lines[i] != m[2]; i++ {
			body = append(body, lines[i])
		}
		files[m[1]] = strings.Join(body, "\n")
	}
	return files
}

// agentConfigFields reads the yaml field names of cmd/agent's Config, and
// which of them are durations, from its source (package main cannot be
// imported).
func agentConfigFields(t *testing.T) (fields, durations map[string]bool) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../cmd/agent/config.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fields, durations = map[string]bool{}, map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, field := range ts.Type.(*ast.StructType).Fields.List {
			if field.Tag == nil {
				continue
			}
			name, _, _ := strings.Cut(reflect.StructTag(strings.Trim(field.Tag.Value, "`")).Get("yaml"), ",")
			fields[name] = true
			if sel, ok := field.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Duration" {
				durations[name] = true
			}
		}
		return false
	})
	if len(fields) == 0 {
		t.Fatal("cmd/agent/config.go: no Config struct with yaml tags found")
	}
	return fields, durations
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
