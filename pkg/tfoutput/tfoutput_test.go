package tfoutput

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-config-inspect/tfconfig"

	"github.com/cohuron/deploy/internal/testenv"
)

// terraformEnv is an environment whose PATH holds the real terraform.
func terraformEnv(t *testing.T) []string {
	bin := testenv.Bin(t, "terraform")
	return []string{"PATH=" + filepath.Dir(bin), "HOME=" + t.TempDir()}
}

// applied copies the fixture state into a fresh working directory, as an
// operator's infra-tf with local state would hold it.
func applied(t *testing.T, state string) string {
	dir := t.TempDir()
	if state != "" {
		if err := os.WriteFile(filepath.Join(dir, "terraform.tfstate"), []byte(state), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fixture(t *testing.T) string {
	b, err := os.ReadFile("testdata/applied/terraform.tfstate")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadLocalState(t *testing.T) {
	env := terraformEnv(t)
	o, err := Read(context.Background(), applied(t, fixture(t)), env)
	if err != nil {
		t.Fatal(err)
	}
	want := Outputs{
		StoreURL: "s3://cohuron-code-prod-123456789012/deploy",
		Region:   "eu-west-1",
		Env:      "prod",
		KMSKey:   "awskms:///arn:aws:kms:eu-west-1:123456789012:key/0b6c1f7e-1111-4222-8333-944455556666",
	}
	o.Dir = ""
	if *o != want {
		t.Fatalf("outputs:\n got %+v\nwant %+v", *o, want)
	}
}

func TestReadErrors(t *testing.T) {
	env := terraformEnv(t)
	noKey := strings.Replace(fixture(t), `"kms_key_uri"`, `"kms_key_id"`, 1)
	badStore := strings.Replace(fixture(t), `"s3://cohuron-code-prod-123456789012/deploy"`, `"cohuron-code-prod"`, 1)
	for _, tc := range []struct {
		name, state, tf string
		env             []string
		want            []string
	}{
		{name: "not applied", want: []string{"found none", "terraform apply"}},
		{name: "output missing", state: noKey, want: []string{"output kms_key_uri", "found no such output"}},
		{name: "not a store URL", state: badStore, want: []string{"store_url", "expected s3://bucket/prefix", `"cohuron-code-prod"`}},
		{name: "remote state not initialised", state: fixture(t), tf: "terraform {\n  backend \"s3\" {}\n}\n", want: []string{"terraform output -json in", `Backend initialization required, please run "terraform init"`}},
		{name: "no terraform", state: fixture(t), env: []string{"PATH=" + t.TempDir()}, want: []string{"terraform is not installed", "--terraform-dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := applied(t, tc.state)
			if tc.tf != "" {
				if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(tc.tf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			e := env
			if tc.env != nil {
				e = tc.env
			}
			_, err := Read(context.Background(), dir, e)
			if err == nil {
				t.Fatal("read succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestInfraDeclaresOutputs holds the contract with infra-tf: every output
// the publisher reads is declared by the root module, and the fixture
// state has the same names.
func TestInfraDeclaresOutputs(t *testing.T) {
	mod, diags := tfconfig.LoadModule("../../infra-tf")
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	for _, name := range Names {
		if _, ok := mod.Outputs[name]; !ok {
			t.Errorf("infra-tf declares no output %q, which the publisher reads (declared: %v)", name, slices.Sorted(maps.Keys(mod.Outputs)))
		}
		if !strings.Contains(fixture(t), `"`+name+`"`) {
			t.Errorf("testdata state lacks output %q", name)
		}
	}
}
