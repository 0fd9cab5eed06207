package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/release"
)

type signOptions struct {
	env   string
	seq   uint64
	keys  keyRefs
	json  bool
	store storeFlags
	trust trustFlags
}

// sign is the co-signer's command: for a policy with a threshold above
// one, each further signer adds a signature to a published release, and
// the last one needed makes it visible to agents.
func (c *CLI) sign(ctx context.Context, args []string) error {
	var o signOptions
	fs := c.flags("sign", "--store URL --env ENV --seq SEQ --policy FILE --key KEYREF [--json]")
	fs.StringVar(&o.env, "env", "", "environment of the release")
	fs.Uint64Var(&o.seq, "seq", 0, "release to co-sign (publisher publish printed it)")
	o.keys.add(fs)
	fs.StringVar(&o.trust.policy, "policy", "", "the hosts' trust policy (policies/ENV.yaml): who must have signed, and how many")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	o.store.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.fromTerraform(ctx, &o.store, &o.env, &o.keys, nil); err != nil {
		return err
	}
	if err := required("env", o.env, "store", o.store.url, "key", o.keys.String(), "policy", o.trust.policy); err != nil {
		return err
	}
	if o.seq == 0 {
		return fault.Usage(fmt.Errorf("missing required flag(s): --seq"))
	}
	pol, err := o.trust.load(ctx, c.password(false))
	if err != nil {
		return err
	}
	signers, err := c.signers(ctx, o.keys)
	if err != nil {
		return err
	}
	st, err := o.store.open(ctx)
	if err != nil {
		return err
	}
	p := &release.Publisher{Store: st, Signers: signers, Now: c.now, Log: c.log}
	res, err := p.CoSign(ctx, o.env, o.seq, pol)
	if err != nil {
		return err
	}
	if o.json {
		return c.printJSON(res)
	}
	fmt.Fprintf(c.out, "signed %s seq %d (%s, %s %s@%s)\n", o.env, o.seq, res.Bundle, res.Source.Repo, res.Source.Branch, short(res.Source.Commit))
	if res.AwaitingSignatures > 0 {
		fmt.Fprintf(c.out, "  trusted signers so far: %s; awaiting %d more before agents see it\n", strings.Join(res.Signers, ", "), res.AwaitingSignatures)
		return nil
	}
	fmt.Fprintf(c.out, "  complete: signed by %s; the latest hint names it, agents apply it on their next poll\n", strings.Join(res.Signers, ", "))
	return nil
}
