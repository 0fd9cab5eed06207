package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

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
}

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
	raw, err := Marshal(next)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return &Preview{Current: cur, Next: next, NextDigest: hex.EncodeToString(sum[:])}, nil
}
