package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
)

// Preview is what a config-only publish of an environment manifest would
// write, computed without signing or writing anything: for a pull
// request, before the change is merged.
type Preview struct {
	// Current is the newest release, verified: the one whose bundle the
	// next release keeps, and what steady hosts run.
	Current *Verified
	// Next is the release a publish would write now (unsigned), and
	// NextDigest the sha256 hex of its bytes.
	Next       *manifest.Release
	NextDigest string
	// Builds names the publish-time hooks a publish would build (their
	// inputs changed); their artifacts in Next are placeholders.
	Builds []string
	// SchemaFiles holds, when both releases have a declarative schema
	// and its digest changes, the schema files either release imports,
	// read from the verified bundle they share (name -> content).
	SchemaFiles map[string][]byte
}

// maxSchemaBytes bounds the schema files a preview reads.
const maxSchemaBytes = 64 << 20

// Preview computes the config-only release req would publish. req.Policy
// is required: the current release is verified before anything is read
// from it, and the preview signs nothing, so no key stands in for it.
func (p *Publisher) Preview(ctx context.Context, req Request) (*Preview, error) {
	if req.Policy == nil {
		return nil, fault.Usage(errors.New("a preview needs the trust policy that verifies the current release"))
	}
	defer p.cleanup()
	cur, b, err := p.reuse(ctx, req.Env.Metadata.Name, req)
	if err != nil {
		return nil, err
	}
	if err := check(req, b); err != nil {
		return nil, err
	}
	next, err := p.newRelease(req, cur.Release.Bundle, cur.Release.Source, b.Index)
	if err != nil {
		return nil, err
	}
	next.Seq = cur.Release.Seq + 1
	pv := &Preview{Current: cur, Next: next}
	for _, h := range next.Spec.Build {
		if !h.AtPublish() {
			continue
		}
		in := next.Inputs.Hooks[h.Name].Digest
		if a, ok := cur.Release.Artifact(h.Name); ok && a.Inputs == in {
			next.Artifacts = append(next.Artifacts, a) // kept: same inputs
			continue
		}
		// A publish would build it; its bytes are not known yet.
		pv.Builds = append(pv.Builds, h.Name)
		next.Artifacts = append(next.Artifacts, manifest.Artifact{Hook: h.Name, Inputs: in,
			BundleRef: manifest.BundleRef{Key: ArtifactKey(h.Name, in), SHA256: strings.Repeat("0", 64), Size: 1, Files: 1}})
	}
	if c, n := cur.Release.Spec.Schema, next.Spec.Schema; c.Declarative() && n.Declarative() && cur.Release.Inputs.Schema.Digest != next.Inputs.Schema.Digest {
		f, err := os.Open(b.Path)
		if err != nil {
			return nil, err
		}
		pv.SchemaFiles, err = bundle.ReadFiles(f, append(cur.Release.SchemaOrder(), next.SchemaOrder()...), maxSchemaBytes)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("schema files of the bundle of release %d: %w", cur.Release.Seq, err)
		}
	}
	raw, err := Marshal(next)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	pv.NextDigest = hex.EncodeToString(sum[:])
	return pv, nil
}
