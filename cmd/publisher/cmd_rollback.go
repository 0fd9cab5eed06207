package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/trust"
)

type rollbackOptions struct {
	env   string
	keys  keyRefs
	to    uint64
	ttl   time.Duration
	json  bool
	store storeFlags
	trust trustFlags
}

func (c *CLI) rollback(ctx context.Context, args []string) error {
	var o rollbackOptions
	fs := c.flags("rollback", "--store URL --env ENV --to SEQ --key KEYREF [--policy FILE] [--json]")
	fs.StringVar(&o.env, "env", "", "environment to roll back")
	fs.Uint64Var(&o.to, "to", 0, "seq whose bundle and spec the new release carries")
	o.keys.add(fs)
	fs.DurationVar(&o.ttl, "ttl", release.DefaultTTL, "how long the new release stays valid")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.StringVar(&o.trust.policy, "policy", "", "trust policy to verify release SEQ (default: the signing key)")
	o.store.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.fromTerraform(ctx, &o.store, &o.env, &o.keys, nil); err != nil {
		return err
	}
	if err := required("env", o.env, "store", o.store.url, "key", o.keys.String()); err != nil {
		return err
	}
	if o.to == 0 {
		return fault.Usage(fmt.Errorf("missing required flag(s): --to"))
	}
	signers, err := c.signers(ctx, o.keys)
	if err != nil {
		return err
	}
	st, err := o.store.open(ctx)
	if err != nil {
		return err
	}
	var pol *trust.Policy
	if o.trust.policy != "" {
		if pol, err = o.trust.load(ctx, c.password(false)); err != nil {
			return err
		}
	} else {
		pub, err := signing.PublicKeyPEM(ctx, signers[0])
		if err != nil {
			return err
		}
		if pol, err = trust.ForKey(pub); err != nil {
			return err
		}
	}
	old, err := release.FetchVerified(ctx, st, o.env, o.to, pol, trust.Expect{Env: o.env, Now: c.now(), AllowExpired: true})
	if err != nil {
		return fmt.Errorf("release %d to roll back to: %w", o.to, err)
	}
	env := &manifest.Environment{APIVersion: manifest.APIVersion, Kind: manifest.KindEnvironment,
		Metadata: manifest.Metadata{Name: o.env}, Spec: old.Release.Spec}
	p := &release.Publisher{Store: st, Signers: signers, Now: c.now, Log: c.log}
	res, err := p.Publish(ctx, release.Request{Env: env, ReuseSeq: o.to, Policy: pol, TTL: o.ttl})
	if err != nil {
		return err
	}
	if o.json {
		return c.printJSON(res)
	}
	fmt.Fprintf(c.out, "published %s seq %d: bundle and spec of seq %d (%s)\n", o.env, res.Seq, o.to, res.Bundle.Key)
	c.printAwaiting(res, o.store.url, o.trust.policy)
	return nil
}
