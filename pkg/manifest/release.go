package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Release is the generated, signed desired state of an environment: one
// bundle of application code plus the environment spec it runs with.
type Release struct {
	APIVersion string    `yaml:"apiVersion" json:"apiVersion"`
	Kind       string    `yaml:"kind" json:"kind"`
	Env        string    `yaml:"env" json:"env"`
	Seq        uint64    `yaml:"seq" json:"seq"`
	IssuedAt   time.Time `yaml:"issuedAt" json:"issuedAt"`
	ExpiresAt  time.Time `yaml:"expiresAt" json:"expiresAt"`
	Bundle     BundleRef `yaml:"bundle" json:"bundle"`
	Source     Source    `yaml:"source" json:"source"`
	Inputs     Inputs    `yaml:"inputs" json:"inputs"`
	// Artifacts are the outputs of the publish-time build hooks, one
	// signed archive each.
	Artifacts []Artifact `yaml:"artifacts,omitempty" json:"artifacts,omitempty"`
	Spec      Spec       `yaml:"spec" json:"spec"`
}

// Artifact is the signed archive of a publish-time hook's outputs, built
// from the hook's inputs (Inputs.Hooks[Hook]): paths in it are relative to
// the release root and lie under the hook's outputs.
type Artifact struct {
	Hook string `yaml:"hook" json:"hook"`
	// Inputs is the digest of what it was built from (Inputs.Hooks[Hook].Digest).
	Inputs    string `yaml:"inputs" json:"inputs"`
	BundleRef `yaml:",inline"`
}

// Artifact returns the artifact of hook name, if the release has one.
func (r *Release) Artifact(name string) (Artifact, bool) {
	for _, a := range r.Artifacts {
		if a.Hook == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// BundleRef points at the bundle in the store and pins its bytes.
type BundleRef struct {
	Key    string `yaml:"key" json:"key"`       // store key, bundles/<name>.tar.gz
	SHA256 string `yaml:"sha256" json:"sha256"` // hex digest of the tar.gz
	Size   int64  `yaml:"size" json:"size"`     // bytes of the tar.gz
	Files  int    `yaml:"files" json:"files"`   // entries in the archive
	// Unpacked is the sum of file sizes, for the host's disk and policy checks.
	Unpacked int64 `yaml:"unpacked" json:"unpacked"`
}

// Source says which commit the bundle was built from.
type Source struct {
	Repo    string    `yaml:"repo" json:"repo"`
	Branch  string    `yaml:"branch" json:"branch"`
	Commit  string    `yaml:"commit" json:"commit"`
	Author  string    `yaml:"author" json:"author"`
	Message string    `yaml:"message" json:"message"`
	Time    time.Time `yaml:"time" json:"time"`
}

// Inputs are the digests each converge step depends on, so a host can
// skip a step whose inputs did not change without unpacking anything.
type Inputs struct {
	// Dependencies: pnpm-lock.yaml, pnpm-workspace.yaml, .npmrc and every package.json.
	Dependencies Input `yaml:"dependencies" json:"dependencies"`
	// Compose: the compose file.
	Compose Input `yaml:"compose" json:"compose"`
	// Schema: the schema files in import order, and the seed files.
	Schema Input `yaml:"schema" json:"schema"`
	// Config: the environment spec; Files holds one digest per env file.
	Config Input `yaml:"config" json:"config"`
	// Code: every file in the bundle (path, mode and content).
	Code Input `yaml:"code" json:"code"`
	// Hooks: per build hook, what it builds from: the files its inputs
	// match, the dependency files, the env files it reads and its own
	// definition. Files holds a short digest per matched file (omitted
	// past MaxInputFiles), so a plan can name what changed.
	Hooks map[string]Input `yaml:"hooks,omitempty" json:"hooks,omitempty"`
	// Processes: per process, what it runs from, likewise.
	Processes map[string]Input `yaml:"processes,omitempty" json:"processes,omitempty"`
}

// MaxInputFiles bounds the per-file digests a hook's or a process's input
// lists, so a glob matching a whole large repository does not bloat the
// signed manifest; the digest still covers every file.
const MaxInputFiles = 1000

// Input is one step's digest, with per-file digests where a plan wants to
// name the file that changed.
type Input struct {
	Digest string            `yaml:"digest" json:"digest"`
	Files  map[string]string `yaml:"files,omitempty" json:"files,omitempty"`
}

// Digest returns "sha256:<hex>" of the canonical JSON of v. encoding/json
// sorts map keys, so equal values give equal digests.
func Digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only unsupported types fail, which is a programming error.
		panic("manifest: digest of unmarshalable value: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
