package main

import (
	"context"
	"flag"
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
		out = append(out, s)
	}
	return out, nil
}
