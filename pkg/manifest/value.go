package manifest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
	"gopkg.in/yaml.v3"
)

// Reference kinds a Value may carry. They are resolved on the host.
const (
	RefSSM            = "ssm"            // AWS SSM Parameter Store name (SecureString)
	RefSecretsManager = "secretsManager" // AWS Secrets Manager secret id
	RefFile           = "file"           // a file on the host (tests, on-prem)
)

var refKinds = []string{RefSSM, RefSecretsManager, RefFile}

// Value is an environment variable's value: a literal string, or a
// reference to a secret resolved on the host. In YAML a literal is a
// scalar and a reference a one-key mapping: {ssm: /cohuron/prod/jwt}.
type Value struct {
	Literal string
	RefKind string // one of the Ref* constants, empty for a literal
	Ref     string
}

// IsRef reports whether v is a secret reference.
func (v Value) IsRef() bool { return v.RefKind != "" }

// String shows a reference as kind:name and a literal as itself.
func (v Value) String() string {
	if v.IsRef() {
		return v.RefKind + ":" + v.Ref
	}
	return v.Literal
}

// UnmarshalYAML accepts a scalar or a mapping with exactly one known key.
func (v *Value) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return fmt.Errorf("line %d: value is empty; write \"\" for an empty string", n.Line)
		}
		*v = Value{Literal: n.Value}
		return nil
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return fmt.Errorf("line %d: a reference has exactly one key (%s)", n.Line, strings.Join(refKinds, ", "))
		}
		k, val := n.Content[0], n.Content[1]
		if !isRefKind(k.Value) {
			return fmt.Errorf("line %d: unknown reference kind %q, expected one of %s", k.Line, k.Value, strings.Join(refKinds, ", "))
		}
		if val.Kind != yaml.ScalarNode || val.Tag == "!!null" {
			return fmt.Errorf("line %d: reference %s must be a string", val.Line, k.Value)
		}
		*v = Value{RefKind: k.Value, Ref: val.Value}
		return nil
	default:
		return fmt.Errorf("line %d: expected a string or a reference mapping", n.Line)
	}
}

// MarshalYAML writes the same shapes UnmarshalYAML reads.
func (v Value) MarshalYAML() (any, error) {
	if v.IsRef() {
		return map[string]string{v.RefKind: v.Ref}, nil
	}
	return v.Literal, nil
}

// MarshalJSON mirrors MarshalYAML, so digests and the JSON Schema agree.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.IsRef() {
		return json.Marshal(map[string]string{v.RefKind: v.Ref})
	}
	return json.Marshal(v.Literal)
}

// JSONSchema describes Value for editors.
func (Value) JSONSchema() *jsonschema.Schema {
	props := orderedmap.New[string, *jsonschema.Schema]()
	kinds := append([]string(nil), refKinds...)
	sort.Strings(kinds)
	for _, k := range kinds {
		props.Set(k, &jsonschema.Schema{Type: "string", MinLength: ptr(uint64(1))})
	}
	return &jsonschema.Schema{
		Description: "A literal string, or a secret reference resolved on the host: {ssm: NAME}, {secretsManager: ID} or {file: PATH}.",
		OneOf: []*jsonschema.Schema{
			// YAML scalars: unquoted numbers and booleans are written as text.
			{Type: "string"}, {Type: "number"}, {Type: "boolean"},
			{
				Type:                 "object",
				Properties:           props,
				AdditionalProperties: jsonschema.FalseSchema,
				MinProperties:        ptr(uint64(1)),
				MaxProperties:        ptr(uint64(1)),
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func isRefKind(k string) bool {
	for _, r := range refKinds {
		if k == r {
			return true
		}
	}
	return false
}

// UnmarshalJSON reads what MarshalJSON writes (the agent's state file).
func (v *Value) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = Value{Literal: s}
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		return fmt.Errorf("expected a string or a one-key reference object, found %s", b)
	}
	for k, ref := range m {
		if !isRefKind(k) {
			return fmt.Errorf("unknown reference kind %q", k)
		}
		*v = Value{RefKind: k, Ref: ref}
	}
	return nil
}
