package manifest

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the environment manifest's JSON Schema.
const SchemaID = "https://deploy.cohuron.dev/schemas/environment.schema.json"

// EnvironmentSchema returns the JSON Schema of the environment manifest,
// generated from the Go types so the two cannot drift apart. The checked-in
// copy under manifests/schema is compared with it by a test.
func EnvironmentSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		// Fields without omitempty are required, as in the decoder.
		RequiredFromJSONSchemaTags: false,
		AllowAdditionalProperties:  false,
		DoNotReference:             false,
	}
	s := r.Reflect(&Environment{})
	s.ID = SchemaID
	s.Title = "Cohuron environment manifest"
	s.Description = "manifests/<env>.yaml: the desired state of one environment (see docs)."
	if def, ok := s.Definitions["Environment"]; ok {
		if p, ok := def.Properties.Get("apiVersion"); ok {
			p.Const = APIVersion
		}
		if p, ok := def.Properties.Get("kind"); ok {
			p.Const = KindEnvironment
		}
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
