package kmssign

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/sigstore/sigstore/pkg/signature/kms/aws"

	"github.com/cohuron/deploy/pkg/signing"
)

// LoadSigner opens a KMS reference (awskms:///alias/NAME or
// awskms:///arn:aws:kms:REGION:ACCOUNT:key/ID) or, for any other
// reference, a cosign key file through signing.LoadSigner. A key ARN
// carries its region, which then wins over AWS_REGION and the profile:
// the key lives where its ARN says.
func LoadSigner(ctx context.Context, ref string, pass signing.PassFunc) (signing.Signer, error) {
	if !signing.IsKMSRef(ref) {
		return signing.LoadSigner(ctx, ref, pass)
	}
	var opts []func(*config.LoadOptions) error
	if r := Region(ref); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	sv, err := awskms.LoadSignerVerifier(ctx, ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("opening KMS key %s: %w", ref, err)
	}
	return sv, nil
}

// Region is the region of a KMS reference that names an ARN, "" for an
// alias or a key id (which use the SDK's default region).
func Region(ref string) string {
	rest, ok := strings.CutPrefix(ref, "awskms://")
	if !ok {
		return ""
	}
	_, id, _ := strings.Cut(rest, "/") // after the optional endpoint
	parts := strings.Split(id, ":")
	if len(parts) < 6 || parts[0] != "arn" || parts[2] != "kms" {
		return ""
	}
	return parts[3]
}
