package manifest

import (
	"fmt"

	"github.com/cohuron/deploy/pkg/strictyaml"
)

// MaxManifestBytes caps an environment or release manifest read from disk
// or a store; the trust policy may lower it for releases.
const MaxManifestBytes = 1 << 20

// ParseEnvironment decodes and validates an environment manifest. Errors
// are *strictyaml.Error with one file:line problem each.
func ParseEnvironment(file string, data []byte) (*Environment, error) {
	env, _, err := ParseEnvironmentDocument(file, data)
	return env, err
}

// ParseEnvironmentDocument is ParseEnvironment that also returns the
// document, so that problems found later (against a bundle, say) name the
// line of their field.
func ParseEnvironmentDocument(file string, data []byte) (*Environment, *strictyaml.Document, error) {
	var env Environment
	doc, err := strictyaml.Decode(file, data, MaxManifestBytes, &env)
	if err != nil {
		return nil, nil, err
	}
	if perr := doc.Problems(file, env.Validate()); perr != nil {
		return nil, nil, perr
	}
	return &env, doc, nil
}

// ParseRelease decodes and validates a release manifest. Call it only on
// bytes whose signature was verified.
func ParseRelease(file string, data []byte, maxBytes int) (*Release, error) {
	if maxBytes <= 0 || maxBytes > MaxManifestBytes {
		maxBytes = MaxManifestBytes
	}
	var rel Release
	doc, err := strictyaml.Decode(file, data, maxBytes, &rel)
	if err != nil {
		return nil, err
	}
	if perr := doc.Problems(file, rel.Validate()); perr != nil {
		return nil, perr
	}
	return &rel, nil
}

func problem(path, format string, args ...any) strictyaml.Problem {
	return strictyaml.Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
}
