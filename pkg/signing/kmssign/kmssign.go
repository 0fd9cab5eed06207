package kmssign

import (
	"context"
	"crypto"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature/kms"
	// Registers the awskms:// provider with kms.Get.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"

	"github.com/cohuron/deploy/pkg/signing"
)

// LoadSigner opens a KMS reference (awskms:///alias/NAME) or, for any
// other reference, a cosign key file through signing.LoadSigner.
func LoadSigner(ctx context.Context, ref string, pass signing.PassFunc) (signing.Signer, error) {
	if !signing.IsKMSRef(ref) {
		return signing.LoadSigner(ctx, ref, pass)
	}
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("opening KMS key %s: %w", ref, err)
	}
	return sv, nil
}
