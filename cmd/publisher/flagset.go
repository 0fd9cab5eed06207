package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/signing/kmssign"
)

// flagSet is the part of *flag.FlagSet the option structs use.
type flagSet interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
	Uint64Var(p *uint64, name string, value uint64, usage string)
	Var(value flag.Value, name, usage string)
}

// keyRefs is a repeatable --key: each key adds one signature, for trust
// policies whose threshold needs several signers, and for key rotation
// (sign with the old and the new key until every host trusts the new).
type keyRefs []string

func (k *keyRefs) String() string { return strings.Join(*k, ",") }

func (k *keyRefs) Set(v string) error {
	*k = append(*k, v)
	return nil
}

func (k *keyRefs) add(fs flagSet) {
	fs.Var(k, "key", "signing key: cosign.key file or awskms:///alias/NAME; repeat to sign with several keys")
}

// signers opens every key.
func (c *CLI) signers(ctx context.Context, refs keyRefs) ([]signing.Signer, error) {
	var out []signing.Signer
	for _, ref := range refs {
		s, err := kmssign.LoadSigner(ctx, ref, c.password(false))
		if err != nil {
			return nil, fault.Usage(err)
		}
		if signing.IsKMSRef(ref) {
			// Reach the key before anything is built or uploaded, and
			// name it: the SDK's own error does not.
			if _, err := signing.PublicKeyPEM(ctx, s); err != nil {
				return nil, fmt.Errorf("KMS key %s (kms:GetPublicKey; check the AWS credentials and the key policy): %w", ref, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// fromTerraform fills the store, region and environment from
// --terraform-dir, and the root's KMS key where no key was given: as the
// signing key (keys, when not nil) or as the one trusted key (trust, when
// not nil and neither --policy nor --key is set).
func (c *CLI) fromTerraform(ctx context.Context, sf *storeFlags, env *string, keys *keyRefs, trust *trustFlags) error {
	out, err := sf.terraform(ctx, c.log, env)
	if err != nil || out == nil {
		return err
	}
	if keys != nil && len(*keys) == 0 {
		*keys = keyRefs{out.KMSKey}
	}
	if trust != nil && trust.policy == "" && trust.key == "" {
		trust.key = out.KMSKey
	}
	return nil
}
